use super::*;

const GOOD: &str = r#"
name = "tiny"

[dataset]
kind = "synthetic"
seed = 3

[models.teacher]
conv = [8, 16]
dense = [32]

[models.student]
conv = [4]

[training]
epochs = 2
batch-size = 32
optimizer = "adam"
lr = 0.01

[grid]
seed = [1, 0]
temperature = [4.0]
alpha = [0.5]
chains = [["student"], ["teacher", "student"]]
"#;

fn problems(text: &str) -> Vec<Problem> {
    parse(Path::new("m.toml"), text)
        .expect_err("manifest should be invalid")
        .problems()
        .to_vec()
}

#[test]
fn parses_a_valid_manifest() {
    let m = parse(Path::new("exp/m.toml"), GOOD).unwrap();
    assert_eq!(m.name, "tiny");
    assert_eq!(m.grid.seeds, vec![0, 1]);
    assert_eq!(m.models["teacher"].conv, vec![8, 16]);
    assert_eq!(m.models["student"].kernel, 3);
    assert_eq!(m.training.optimizer, Optimizer::Adam);
    assert!(matches!(m.dataset, DatasetSpec::Synthetic(ref s) if s.seed == 3 && s.classes == 4));
}

#[test]
fn idx_paths_are_relative_to_the_manifest() {
    let text = GOOD.replace(
        "kind = \"synthetic\"\nseed = 3",
        "kind = \"fashion-mnist\"\npath = \"../data/fm\"",
    );
    let m = parse(Path::new("experiments/m.toml"), &text).unwrap();
    match m.dataset {
        DatasetSpec::Files { path, format, .. } => {
            assert_eq!(path, Path::new("experiments/../data/fm"));
            assert_eq!(format, FileFormat::FashionMnist);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_key_points_at_the_line_and_suggests() {
    let text = GOOD.replace("temperature = [4.0]", "tempreature = [4.0]");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].message.contains("unknown field `tempreature`"),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].location, "m.toml:23:1");
    assert_eq!(p[0].help.as_deref(), Some("did you mean `temperature`?"));
}

#[test]
fn out_of_range_values_are_located() {
    let p = problems(&GOOD.replace("temperature = [4.0]", "temperature = [4.0, -1.0]"));
    assert!(
        p[0].message.contains("temperature must be > 0, found -1"),
        "{}",
        p[0].message
    );
    assert!(p[0].location.starts_with("m.toml:23:"), "{}", p[0].location);

    let p = problems(&GOOD.replace("alpha = [0.5]", "alpha = [1.5]"));
    assert!(
        p[0].message.contains("alpha must be within [0, 1]"),
        "{}",
        p[0].message
    );

    let p = problems(&GOOD.replace("epochs = 2", "epochs = 0"));
    assert!(
        p[0].message
            .contains("expected a positive integer, found 0"),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].location, "m.toml:16:10");
}

#[test]
fn cross_field_problems_are_reported_together() {
    let text = GOOD
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"]]",
            "chains = [[], [\"teachr\", \"@assistant\"]]",
        )
        .replace("seed = [1, 0]", "seed = []");
    let p = problems(&text);
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "`grid.seed` is empty",
            "a chain needs at least one model",
            "undefined model `teachr`",
            "chain uses `@assistant` but `grid.assistant` is not set",
        ]
    );
    assert_eq!(p[2].help.as_deref(), Some("did you mean `teacher`?"));
    assert_eq!(p[2].location, "m.toml:25:16");
}

#[test]
fn role_axes_expand_placeholders() {
    let text = GOOD.replace(
        "chains = [[\"student\"], [\"teacher\", \"student\"]]",
        "student = [\"student\", \"teacher\"]\nchains = [[\"teacher\", \"@student\"]]",
    );
    let m = parse(Path::new("m.toml"), &text).unwrap();
    assert_eq!(m.grid.roles["student"], vec!["student", "teacher"]);
}

#[test]
fn syntax_errors_are_located() {
    let p = problems(&GOOD.replace("lr = 0.01", "lr = "));
    assert_eq!(p.len(), 1);
    assert!(p[0].location.starts_with("m.toml:19:"), "{}", p[0].location);
}

#[test]
fn grids_over_the_cell_limit_are_refused() {
    // 3 seeds x (1 no-KD cell + 1 KD cell) = 6 cells.
    let p = problems(&GOOD.replace("seed = [1, 0]", "seed = [1, 0, 2]\nmax-cells = 5"));
    assert_eq!(p.len(), 1);
    assert!(
        p[0].message
            .contains("the grid has 6 cells, over the limit of 5"),
        "{}",
        p[0].message
    );
    assert!(
        parse(
            Path::new("m.toml"),
            &GOOD.replace("seed = [1, 0]", "seed = [1, 0, 2]\nmax-cells = 6")
        )
        .is_ok()
    );
}

#[test]
fn nesterov_needs_sgd_with_momentum() {
    let p = problems(&GOOD.replace("lr = 0.01", "lr = 0.01\nnesterov = true"));
    assert!(
        p[0].message.contains("`training.nesterov` needs"),
        "{}",
        p[0].message
    );
    let ok = GOOD.replace(
        "optimizer = \"adam\"\nlr = 0.01",
        "optimizer = \"sgd\"\nlr = 0.01\nmomentum = 0.9\nnesterov = true",
    );
    assert!(parse(Path::new("m.toml"), &ok).unwrap().training.nesterov);
}

#[test]
fn schedules_parse_and_decay() {
    let m = parse(
        Path::new("m.toml"),
        &GOOD.replace(
            "lr = 0.01",
            "lr = 0.01\nschedule = { kind = \"step\", every = 2, gamma = 0.5 }",
        ),
    )
    .unwrap();
    let s = m.training.schedule;
    let lrs: Vec<f64> = (0..5).map(|e| s.lr(0.01, e, 5)).collect();
    assert_eq!(lrs, vec![0.01, 0.01, 0.005, 0.005, 0.0025]);
    assert!((Schedule::Cosine.lr(1.0, 2, 4) - 0.5).abs() < 1e-12);
    let p = problems(&GOOD.replace("lr = 0.01", "lr = 0.01\nschedule = { kind = \"linear\" }"));
    assert!(
        p[0].message.contains("unknown variant `linear`"),
        "{}",
        p[0].message
    );
}
