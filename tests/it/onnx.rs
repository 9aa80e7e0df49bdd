//! Teachers as ONNX files: a PyTorch export gives PyTorch's logits in kdgrid (a ResNet, and a
//! ConvNeXt kdgrid has no family for, resized, renormalized, channels-last, batch fixed to one,
//! its outputs picked by a class map), is evaluated once as a stage and teaches; graphs that do
//! not fit the data are refused before anything trains.

use crate::support::*;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shipped fruit images (5 classes, 40x40), teacher `[models.teacher]` = `teacher`, a small
/// student.
fn manifest(teacher: &str) -> String {
    format!(
        r#"
name = "onnx"

[dataset]
kind = "image-folder"
path = "{data}"

[models.teacher]
{teacher}

[models.student]
conv = [8]
dense = [16]

[training]
epochs = 3
batch-size = 32
optimizer = "adam"
lr = 0.005

[grid]
seed = [0, 1]
temperature = [4.0]
alpha = [0.5]
chains = [["student"], ["teacher", "student"]]
"#,
        data = repo("experiments/data/fruit").display()
    )
}

/// `onnx = "<path>"`, reading images normalized as kdgrid's models read them.
fn onnx_line(path: &Path) -> String {
    onnx_with(path, "normalize = \"dataset\"")
}

/// `kdgrid predict` of `ws`'s teacher stage (seed 0) on its first `limit` test images (with
/// `--inputs` when `inputs`): the file written and its JSON.
fn predict_teacher(ws: &Workspace, limit: &str, inputs: bool) -> (PathBuf, serde_json::Value) {
    let id = stage_id(ws, &[], "teacher", 0);
    let out = ws.dir.path().join("p.json");
    let mut args = vec!["predict", "--stage", &id, "--limit", limit];
    args.extend(inputs.then_some("--inputs"));
    args.extend(["--out", out.to_str().unwrap()]);
    ws.kdgrid(&args).success();
    let json = read_json(&out);
    (out, json)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `onnx = "<path>"` with `input = { <input> }`.
fn onnx_with(path: &Path, input: &str) -> String {
    format!("onnx = \"{}\"\ninput = {{ {input} }}", path.display())
}

#[test]
fn an_onnx_teacher_is_evaluated_once_and_teaches() {
    let file = repo("experiments/data/fruit-resnet8.onnx");
    let ws = Workspace::new(&manifest(&onnx_line(&file)));
    let stages = plan_stages(&ws, &[]);
    // Frozen, it draws nothing random: one stage for both seeds.
    assert_eq!(
        stages.iter().filter(|s| s.0 == "teacher").count(),
        1,
        "{stages:?}"
    );
    // On an image folder (whose images' shape is known only once they load), `plan` shows the
    // graph's size and cost from its fixed input, and its stage as frozen, not trained.
    let plan = stdout(&ws.kdgrid(&["plan"]).success());
    let row = plan.lines().find(|l| l.starts_with("teacher ")).unwrap();
    assert!(row.contains("77381") && !row.contains('?'), "{plan}");
    assert!(plan.contains("frozen (onnx)"), "{plan}");
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("onnx", "runs.parquet");
    let chains = strings(&runs, "chain");
    let accuracy = floats(&runs, "test_accuracy");
    let teacher = chains.iter().position(|c| c == "teacher").unwrap();
    // The same network as the shipped safetensors teacher, which PyTorch measured at 0.95 on
    // these 100 test images (scripts/examples/pytorch-teacher.py; tests/it/imported.rs).
    assert!(
        (accuracy[teacher] - 0.95).abs() < 1e-9,
        "{}",
        accuracy[teacher]
    );
    for (c, a) in chains.iter().zip(&accuracy) {
        assert!(*a > 0.5, "{c}: {a} (chance is 0.2)");
    }
    // Its size is its file's, its parameters the graph's values: 77,381 initializer values as
    // the `onnx` package counts them (PyTorch counts 77,717 trainable parameters; the export
    // folds batch norm into the convolutions).
    let bytes = floats(&runs, "model_bytes");
    assert_eq!(
        bytes[teacher] as u64,
        std::fs::metadata(&file).unwrap().len()
    );
    let params = floats(&runs, "params");
    assert_eq!(params[teacher], 77_381.0);
    // Rerun, everything is reused (the store holds its record, not its weights), and its
    // logits are there to read.
    let again = stdout(&ws.kdgrid(&["run"]).success());
    assert!(again.contains("0 trained, 5 reused"), "{again}");
    let (_, p) = predict_teacher(&ws, "1000", false);
    let (logits, labels) = (
        p["logits"].as_array().unwrap(),
        p["labels"].as_array().unwrap(),
    );
    assert_eq!(labels.len(), 100);
    let correct = (0..labels.len())
        .filter(|&i| {
            let row: Vec<f64> = logits[i * 5..(i + 1) * 5]
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let best = (0..5).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as u64 == labels[i].as_u64().unwrap()
        })
        .count();
    assert_eq!(correct, 95, "its predictions are its measured accuracy");
    // The KD students learned from it: their agreement with it is measured.
    let report = std::fs::read_to_string(ws.results().join("onnx/report.md")).unwrap();
    assert!(report.contains("teacher > student"), "{report}");
    // Its file's digest is in the ids: another file is another teacher.
    let copy = ws.dir.path().join("other.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    // An unknown protobuf field (number 100, varint 1): the same graph in other bytes.
    bytes.extend_from_slice(b"\xa0\x06\x01");
    std::fs::write(&copy, bytes).unwrap();
    let other = Workspace::new(&manifest(&onnx_line(&copy)));
    let teacher_id = |ws: &Workspace| stage_id(ws, &[], "teacher", 0);
    assert_ne!(teacher_id(&ws), teacher_id(&other));
    // The same file declared with another normalization is another teacher too.
    let renormalized = Workspace::new(&manifest(&onnx_with(
        &file,
        "mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25]",
    )));
    assert_ne!(teacher_id(&ws), teacher_id(&renormalized));
}

#[test]
fn graphs_that_do_not_fit_are_refused_before_training() {
    let file = repo("experiments/data/fruit-resnet8.onnx");
    let synthetic = |classes: usize, channels: usize, teacher: &str| {
        manifest(teacher).replace(
            &format!(
                "kind = \"image-folder\"\npath = \"{}\"",
                repo("experiments/data/fruit").display()
            ),
            &format!(
                "kind = \"synthetic\"\nclasses = {classes}\nchannels = {channels}\nimage-size = 8\ntrain-size = 64\ntest-size = 32"
            ),
        )
    };
    // A dataset of known shape: the manifest check names the file, both shapes and the line.
    // Grey images do not fit a graph of RGB ones.
    let ws = Workspace::new(&synthetic(5, 1, &onnx_line(&file)));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(err.contains("fruit-resnet8.onnx"), "{err}");
    assert!(
        err.contains("[?, 3, 40, 40]") && err.contains("[1, 8, 8]"),
        "{err}"
    );
    assert!(err.contains("m.toml:"), "{err}");
    // 8x8 images are resized to the graph's fixed 40x40, but not to a declared size it does
    // not take.
    let ws = Workspace::new(&synthetic(5, 3, &onnx_line(&file)));
    let plan = stdout(&ws.kdgrid(&["plan"]).success());
    assert!(plan.contains("resizes 8x8 images to 40x40"), "{plan}");
    let ws = Workspace::new(&synthetic(
        5,
        3,
        &onnx_with(&file, "size = 32, normalize = \"dataset\""),
    ));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("[?, 3, 40, 40]") && err.contains("resized to 32x32"),
        "{err}"
    );
    // Its 5 outputs are not the dataset's 4 classes.
    let ws = Workspace::new(&synthetic(4, 3, &onnx_line(&file)));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("gives 5 outputs") && err.contains("4 classes") && err.contains("class-map"),
        "{err}"
    );
    // An image folder's shape is known once it loads: refused then, before anything trains.
    let ws = Workspace::new(&manifest(&format!(
        "{}\nclass-map = [0, 1, 2]",
        onnx_line(&file)
    )));
    let err = flat(&stderr(&ws.kdgrid(&["run", "--quiet"]).failure()));
    assert!(
        err.contains("fruit-resnet8.onnx")
            && err.contains("lists 3 outputs")
            && err.contains("5 classes"),
        "{err}"
    );
    let stages = ws.results().join("onnx/stages");
    let trained = std::fs::read_dir(&stages).map_or(0, |d| {
        d.filter(|e| e.as_ref().unwrap().path().is_dir()).count()
    });
    assert_eq!(trained, 0);
    // A file that is not a graph is a located manifest error.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not a protobuf at all").unwrap();
    let ws = Workspace::new(&manifest(&onnx_line(junk.path())));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("models.teacher.onnx") && err.contains("m.toml:"),
        "{err}"
    );
    // Frozen: it does not train, so it takes no architecture or training keys and never
    // learns from a teacher.
    let ws = Workspace::new(&manifest(&format!("{}\nepochs = 3", onnx_line(&file))));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(err.contains("is an ONNX model"), "{err}");
    let ws = Workspace::new(
        &manifest(&onnx_line(&file))
            .replace("[\"teacher\", \"student\"]]", "[\"student\", \"teacher\"]]"),
    );
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("ONNX model `teacher` is not the first model of chain `student > teacher`"),
        "{err}"
    );
    // An ensemble of it would be one graph averaged with itself.
    let ws = Workspace::new(&manifest(&onnx_line(&file)).replace(
        "\n[grid]",
        "\n[models.trio]\nensemble = \"teacher\"\nseeds = [0, 1]\n\n[grid]",
    ));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(err.contains("which is not trained"), "{err}");
    // Its normalization is never guessed: the manifest says it, at the model's line.
    let ws = Workspace::new(&manifest(&format!("onnx = \"{}\"", file.display())));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("does not say how the graph's images are normalized")
            && err.contains("normalize = \"dataset\"")
            && err.contains("m.toml:"),
        "{err}"
    );
    let ws = Workspace::new(&manifest(&onnx_with(
        &file,
        "normalize = \"dataset\", mean = [0.5, 0.5, 0.5], std = [0.2, 0.2, 0.2]",
    )));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(err.contains("one or the other"), "{err}");
    // `input`, `output`, `scores` and `class-map` belong to ONNX models.
    let ws = Workspace::new(&manifest("conv = [4]\nclass-map = [0, 1]"));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(err.contains("applies to ONNX models only"), "{err}");
}

/// Exports with `scripts/examples/pytorch-teacher.py export`, runs each as a teacher stage and
/// compares `kdgrid predict`'s logits with PyTorch's on the same images (the script's
/// `check`), within 1e-4: the shipped ResNet-8 as exported; a ConvNeXt (LayerNorm, GELU,
/// depthwise convs: no kdgrid family) with seeded random weights, resized from 40 to 32,
/// renormalized, its 7 outputs mapped onto the 5 classes, exported for batches of exactly 3
/// (100 images: the last call padded); and the
/// same ConvNeXt reading channels-last images.
#[cfg(feature = "tch")]
#[test]
fn onnx_exports_give_pytorch_logits() {
    let python = std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let weights = repo("experiments/data/fruit-resnet8.safetensors");
    let (convnext, random) = (path("convnext.onnx"), path("convnext.safetensors"));
    let (channels_last, resnet) = (path("nhwc.onnx"), path("resnet8.onnx"));
    let exports: [Vec<&str>; 3] = [
        vec![
            "--weights",
            weights.to_str().unwrap(),
            "--classes",
            "5",
            "--size",
            "40",
            "--onnx",
            &resnet,
        ],
        vec![
            "--arch",
            "convnext",
            "--classes",
            "7",
            "--size",
            "32",
            "--seed",
            "3",
            "--out",
            &random,
            "--onnx",
            &convnext,
            "--fixed-batch",
            "3",
        ],
        vec![
            "--arch",
            "convnext",
            "--classes",
            "7",
            "--size",
            "32",
            "--seed",
            "3",
            "--onnx",
            &channels_last,
            "--nhwc",
        ],
    ];
    for args in &exports {
        export(&python, args);
    }
    let convnext_input = "input = { size = 32, mean = [0.4, 0.5, 0.6], std = [0.2, 0.25, 0.3] }\nclass-map = [6, 0, 3, 1, 4]";
    let convnext_check = [
        "--arch",
        "convnext",
        "--outputs",
        "7",
        "--class-map",
        "6",
        "0",
        "3",
        "1",
        "4",
        "--train-size",
        "32",
        "--mean",
        "0.4",
        "0.5",
        "0.6",
        "--std",
        "0.2",
        "0.25",
        "0.3",
        "--weights",
        &random,
    ];
    let resnet_check = [
        "--arch",
        "resnet",
        "--depth",
        "8",
        "--weights",
        weights.to_str().unwrap(),
    ];
    let nhwc_input = convnext_input.replace("input = {", "input = { layout = \"nhwc\",");
    for (file, input, check) in [
        (&resnet, String::new(), &resnet_check[..]),
        (&convnext, convnext_input.to_string(), &convnext_check[..]),
        (&channels_last, nhwc_input, &convnext_check[..]),
    ] {
        let input = if input.is_empty() {
            "input = { normalize = \"dataset\" }".to_string()
        } else {
            input
        };
        let ws = Workspace::new(&manifest(&format!("onnx = \"{file}\"\n{input}")));
        ws.kdgrid(&["run", "--quiet"]).success();
        assert_pytorch_logits(&python, &ws, check);
    }
}

/// `pytorch-teacher.py export <args>` with the cached Python.
#[cfg(feature = "tch")]
fn export(python: &str, args: &[&str]) {
    let out = std::process::Command::new(python)
        .arg(repo("scripts/examples/pytorch-teacher.py"))
        .arg("export")
        .args(args)
        .output()
        .expect("python with torch, onnx and onnxscript (run through `make test`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kdgrid predict` of `ws`'s teacher stage on the 100 test images, checked in PyTorch by
/// `pytorch-teacher.py check <check>`: kdgrid's logits within 1e-4 of PyTorch's.
#[cfg(feature = "tch")]
fn assert_pytorch_logits(python: &str, ws: &Workspace, check: &[&str]) {
    let (predictions, _) = predict_teacher(ws, "100", true);
    let p = predictions.to_str().unwrap();
    let out = std::process::Command::new(python)
        .arg(repo("scripts/examples/pytorch-teacher.py"))
        .arg("check")
        .args(check)
        .args(["--predictions", p])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("OK"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// torch 2.9's default exporter (`torch.onnx.export(model, (x,), path)`, torch.export with a
/// dynamic batch): the graph runs with PyTorch's logits, and the weights it writes to
/// `teacher.onnx.data` beside the graph are part of the teacher's identity: new weights in
/// that file alone retrain the teacher stage and its students.
#[cfg(feature = "tch")]
#[test]
fn the_default_torch_export_runs_and_its_weights_file_is_in_the_id() {
    let python = std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ws = Workspace::new("");
    let dir = ws.dir.path();
    let (graph, data) = (dir.join("teacher.onnx"), dir.join("teacher.onnx.data"));
    let random = dir.join("convnext.safetensors");
    let args = [
        "--arch",
        "convnext",
        "--classes",
        "5",
        "--size",
        "40",
        "--seed",
        "3",
        "--dynamo",
        "--out",
        random.to_str().unwrap(),
        "--onnx",
        graph.to_str().unwrap(),
    ];
    export(&python, &args);
    assert!(
        data.exists(),
        "torch 2.9 writes the weights beside the graph"
    );
    std::fs::write(ws.manifest(), manifest(&onnx_line(&graph))).unwrap();
    let plan = stdout(&ws.kdgrid(&["plan"]).success());
    assert!(plan.contains("+ `teacher.onnx.data`"), "{plan}");
    ws.kdgrid(&["run", "--quiet"]).success();
    let w = random.to_str().unwrap();
    assert_pytorch_logits(&python, &ws, &["--arch", "convnext", "--weights", w]);
    // New weights, the same graph file (every f32 of `teacher.onnx.data` halved): the
    // teacher and the students it taught train again, the students trained on labels are
    // reused, and the teacher's logits are the new weights'.
    let logits = |ws: &Workspace| predict_teacher(ws, "100", false).1["logits"].clone();
    let (before, teacher) = (logits(&ws), stage_id(&ws, &[], "teacher", 0));
    let halved: Vec<u8> = std::fs::read(&data)
        .unwrap()
        .chunks(4)
        .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) * 0.5).to_le_bytes())
        .collect();
    std::fs::write(&data, halved).unwrap();
    assert_ne!(stage_id(&ws, &[], "teacher", 0), teacher);
    let rerun = stdout(&ws.kdgrid(&["run"]).success());
    assert!(rerun.contains("3 trained, 2 reused"), "{rerun}");
    assert_ne!(logits(&ws), before);
    let runs = ws.parquet("onnx", "runs.parquet");
    let chains = strings(&runs, "chain");
    let bytes = floats(&runs, "model_bytes");
    let t = chains.iter().position(|c| c == "teacher").unwrap();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    assert_eq!(
        bytes[t],
        size(&graph) + size(&data),
        "its size counts both files"
    );
    // Without its weights file the graph is refused at the manifest, naming the file.
    std::fs::remove_file(&data).unwrap();
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("reads its weights from `teacher.onnx.data`") && err.contains("m.toml:"),
        "{err}"
    );
}

/// A graph ending in softmax gives probabilities: kdgrid reads that from its last operator,
/// says so, and takes their log as the teacher's logits (PyTorch's log-softmax); declaring
/// them logits is refused. A graph with an auxiliary head as its first output is refused
/// until `output` names the logits, which then run as PyTorch's.
#[cfg(feature = "tch")]
#[test]
fn probabilities_and_several_outputs_are_never_read_as_logits_silently() {
    let python = std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ws = Workspace::new("");
    let dir = ws.dir.path();
    let random = dir.join("convnext.safetensors");
    let (softmax, aux) = (dir.join("softmax.onnx"), dir.join("aux.onnx"));
    let common = [
        "--arch",
        "convnext",
        "--classes",
        "5",
        "--size",
        "40",
        "--seed",
        "3",
    ];
    let mut args = common.to_vec();
    args.extend(["--out", random.to_str().unwrap(), "--softmax"]);
    args.extend(["--onnx", softmax.to_str().unwrap()]);
    export(&python, &args);
    let mut args = common.to_vec();
    args.extend(["--aux", "--dynamo", "--onnx", aux.to_str().unwrap()]);
    export(&python, &args);
    let alone = |teacher: String| {
        manifest(&teacher).replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"]]",
            "chains = [[\"teacher\"]]",
        )
    };
    let weights = random.to_str().unwrap();
    std::fs::write(ws.manifest(), alone(onnx_line(&softmax))).unwrap();
    let plan = stdout(&ws.kdgrid(&["plan"]).success());
    assert!(
        plan.contains("read from the graph: probabilities from its last operator (Softmax)"),
        "{plan}"
    );
    ws.kdgrid(&["run", "--quiet"]).success();
    let check = ["--arch", "convnext", "--weights", weights, "--log-softmax"];
    assert_pytorch_logits(&python, &ws, &check);
    let runs = ws.parquet("onnx", "runs.parquet");
    let loss = floats(&runs, "test_loss")[0];
    assert!(
        loss.is_finite() && loss > 0.0,
        "cross-entropy of log p: {loss}"
    );
    std::fs::write(
        ws.manifest(),
        alone(format!("{}\nscores = \"logits\"", onnx_line(&softmax))),
    )
    .unwrap();
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(err.contains("comes from a Softmax"), "{err}");
    // Two outputs, the auxiliary head first.
    let aux_ws = Workspace::new(&alone(onnx_line(&aux)));
    let err = flat(&stderr(&aux_ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("gives 2 outputs (`aux`, `logits`)") && err.contains("output = "),
        "{err}"
    );
    std::fs::write(
        aux_ws.manifest(),
        alone(format!("{}\noutput = \"logits\"", onnx_line(&aux))),
    )
    .unwrap();
    aux_ws.kdgrid(&["run", "--quiet"]).success();
    assert_pytorch_logits(
        &python,
        &aux_ws,
        &["--arch", "convnext", "--weights", weights],
    );
}

/// Runs `cmd` and returns whether it succeeded and its peak resident memory in MiB, as the
/// kernel accounted it for that process alone (`wait4`'s `ru_maxrss`).
#[cfg(feature = "tch")]
fn peak_rss_mib(cmd: &mut std::process::Command) -> (bool, f64) {
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct the call fills; `pid` is our own unwaited child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_maxrss as f64 / 1024.0)
}

/// A MobileNetV2 exported with an open batch by torch 2.9's default exporter: `predict` of
/// 10,000 images runs in bounded memory (an open batch left symbolic held every image's
/// intermediates at once: 4.45 GB for 1,000 images).
#[cfg(feature = "tch")]
#[test]
fn predict_of_10000_images_stays_small() {
    let python = std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ws = Workspace::new("");
    let graph = ws.dir.path().join("mobilenet.onnx");
    export(
        &python,
        &[
            "--arch",
            "mobilenet-v2",
            "--classes",
            "10",
            "--size",
            "32",
            "--dynamo",
            "--onnx",
            graph.to_str().unwrap(),
        ],
    );
    let text = format!(
        r#"
name = "big"
[dataset]
kind = "synthetic"
classes = 10
channels = 3
image-size = 32
train-size = 64
test-size = 10000
[models.teacher]
{}
[training]
epochs = 1
batch-size = 64
optimizer = "adam"
lr = 0.001
[grid]
seed = [0]
chains = [["teacher"]]
"#,
        onnx_line(&graph)
    );
    std::fs::write(ws.manifest(), text).unwrap();
    ws.kdgrid(&["run", "--quiet"]).success();
    let id = stage_id(&ws, &[], "teacher", 0);
    let out = ws.dir.path().join("p.json");
    let mut predict = std::process::Command::new(assert_cmd::cargo::cargo_bin("kdgrid"));
    predict
        .arg("--results")
        .arg(ws.results())
        .args(["predict", "--stage", &id, "--limit", "10000", "--out"])
        .arg(&out)
        .arg(ws.manifest());
    let (ok, mib) = peak_rss_mib(&mut predict);
    assert!(ok);
    let p = read_json(&out);
    assert_eq!(p["logits"].as_array().unwrap().len(), 10_000 * 10);
    assert!(
        mib < 1024.0,
        "predict of 10,000 images peaked at {mib:.0} MiB"
    );
}
