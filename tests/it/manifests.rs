//! Snapshot tests of the manifest language: the exact error text of a corpus of invalid
//! manifests, and the expansion of every example manifest (with each of its profiles).
//!
//! To accept new output after an intended change: `KDGRID_BLESS=1 cargo test --release manifests`,
//! then review the diff of `tests/manifests/`.

use kdgrid::manifest::{self, Problem};
use kdgrid::plan::{self, Role};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Compares `actual` with the snapshot at `path`, or rewrites it under `KDGRID_BLESS=1`.
fn check_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("KDGRID_BLESS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KDGRID_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        expected,
        actual,
        "{} differs (KDGRID_BLESS=1 accepts the new text)",
        path.display()
    );
}

/// A problem as scripts see it: location, message, offending text, help.
fn render(p: &Problem) -> String {
    let mut s = format!("{}: {}\n    {}\n", p.location, p.message, p.label);
    if let Some(help) = &p.help {
        s += &format!("    help: {help}\n");
    }
    s
}

#[test]
fn invalid_manifests_report_every_problem_exactly() {
    let dir = root().join("tests/manifests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the corpus is missing");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let profile = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# profile: "));
        let name = Path::new(file.file_name().unwrap());
        let err = manifest::parse_profile(name, &text, profile)
            .expect_err(&format!("{} should be invalid", file.display()));
        let actual: String = err.problems().iter().map(render).collect();
        check_snapshot(&file.with_extension("txt"), &actual);
    }
}

#[test]
fn example_manifests_expand_as_documented() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = String::new();
    for file in files {
        let base = manifest::load(&file).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            base.warnings.is_empty(),
            "{}: {:?}",
            file.display(),
            base.warnings
        );
        let profiles: Vec<Option<String>> = std::iter::once(None)
            .chain(base.profiles.iter().cloned().map(Some))
            .collect();
        for profile in profiles {
            let m = manifest::load_profile(&file, profile.as_deref()).unwrap();
            let plan = plan::expand(&m, "");
            let roles = plan.count_by_role();
            let n = |r| roles.get(&r).copied().unwrap_or(0);
            let longest = plan.cells.iter().map(|c| c.chain.len()).max().unwrap_or(0);
            out += &format!(
                "{} [{}] -> results/{}: {} cells, {} stages ({} teacher, {} assistant, {} student), chains up to {longest} models, first stage {}\n",
                file.file_name().unwrap().to_string_lossy(),
                profile.as_deref().unwrap_or("-"),
                m.name,
                plan.cells.len(),
                plan.stages.len(),
                n(Role::Teacher),
                n(Role::Assistant),
                n(Role::Student),
                plan.stages[0].id,
            );
        }
    }
    check_snapshot(&root().join("tests/manifests/examples.txt"), &out);
}

#[test]
fn the_readme_manifest_is_valid() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README shows a manifest");
    let m = manifest::parse(&root().join("README.md"), block).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(m.profiles, vec!["ci"]);
    // 5 seeds x (1 baseline + 3 zipped (T, alpha) pairs), minus T = 20 at seeds 3 and 4.
    assert_eq!(plan::expand(&m, "").cells.len(), 18);
}

#[test]
fn the_training_blocks_of_the_manifest_reference_are_valid() {
    let doc = std::fs::read_to_string(root().join("docs/manifest.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("[training]"))
        .collect();
    assert!(
        blocks.len() >= 2,
        "the reference shows Adam's and SGD's keys"
    );
    for block in blocks {
        let text = format!(
            "name = \"doc\"\n[dataset]\nkind = \"synthetic\"\n[models.m]\nconv = [4]\n\
             [grid]\nseed = [0]\nchains = [[\"m\"]]\n{}",
            block.replace("validation = 5000", "validation = 100")
        );
        manifest::parse(&root().join("docs/manifest.md"), &text)
            .unwrap_or_else(|e| panic!("{block}\n{e:?}"));
    }
}

#[test]
fn settings_the_optimizer_ignores_are_refused_where_written() {
    let text = "name = \"x\"\n[dataset]\nkind = \"synthetic\"\n[models.m]\nconv = [4]\n\
                [training]\nepochs = 1\nbatch-size = 8\noptimizer = \"adam\"\nlr = 0.01\n\
                momentum = 0.9\n[grid]\nseed = [0]\nchains = [[\"m\"]]\n";
    let err = format!(
        "{:?}",
        manifest::parse(std::path::Path::new("m.toml"), text).unwrap_err()
    )
    .replace("\\\"", "\"");
    assert!(
        err.contains(
            "`training.momentum` applies to `optimizer = \"sgd\"`, not `optimizer = \"adam\"`"
        ),
        "{err}"
    );
    let sgd = text
        .replace("\"adam\"", "\"sgd\"")
        .replace("momentum = 0.9", "betas = [0.9, 0.99]");
    let err = format!(
        "{:?}",
        manifest::parse(std::path::Path::new("m.toml"), &sgd).unwrap_err()
    )
    .replace("\\\"", "\"");
    assert!(err.contains("`training.betas` applies to"), "{err}");
}

#[test]
fn limits_on_synthetic_data_are_refused_and_lstm_weights_too() {
    let synthetic = "name = \"x\"\n[dataset]\nkind = \"synthetic\"\ntrain-limit = 100\n\
                     [models.m]\nconv = [4]\n[training]\nepochs = 1\nbatch-size = 8\n\
                     optimizer = \"adam\"\nlr = 0.01\n[grid]\nseed = [0]\nchains = [[\"m\"]]\n";
    let err = format!(
        "{:?}",
        manifest::parse(std::path::Path::new("m.toml"), synthetic).unwrap_err()
    )
    .replace("\\\"", "\"");
    assert!(
        err.contains("`dataset.train-limit` does not apply to `kind = \"synthetic\"`")
            && err.contains("train-size"),
        "{err}"
    );
    let lstm = "name = \"x\"\n[dataset]\nkind = \"text\"\npath = \"reviews\"\n\
                [models.m]\nfamily = \"lstm\"\nembedding = 8\nhidden = [8]\n\
                weights = \"m.pt\"\n[training]\nepochs = 1\nbatch-size = 8\n\
                optimizer = \"adam\"\nlr = 0.01\n[grid]\nseed = [0]\nchains = [[\"m\"]]\n";
    let err = format!(
        "{:?}",
        manifest::parse(std::path::Path::new("m.toml"), lstm).unwrap_err()
    )
    .replace("\\\"", "\"");
    assert!(
        err.contains("`models.m.weights`: `lstm` models cannot be imported"),
        "{err}"
    );
}
