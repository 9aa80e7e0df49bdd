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
    assert_eq!(m.grid.seeds, vec![1, 0], "axes keep the order written");
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

fn grid_of(extra: &str) -> Manifest {
    let text = GOOD.replace(
        "chains = [[\"student\"], [\"teacher\", \"student\"]]",
        &format!("chains = [[\"student\"], [\"teacher\", \"student\"]]\n{extra}"),
    );
    parse(Path::new("m.toml"), &text).unwrap_or_else(|e| panic!("{:?}", e.problems()))
}

fn grid_with(axes: &str) -> Manifest {
    let text = GOOD.replace(
        "seed = [1, 0]\ntemperature = [4.0]\nalpha = [0.5]\n",
        &format!("{axes}\n"),
    );
    parse(Path::new("m.toml"), &text).unwrap_or_else(|e| panic!("{:?}", e.problems()))
}

#[test]
fn serde_level_problems_in_many_sections_are_reported_together() {
    let text = GOOD
        .replace("seed = 3", "seed = 3\nclases = 4")
        .replace("epochs = 2", "epochs = \"two\"")
        .replace("batch-size = 32", "batch-size = 32\nbatch_size = 32")
        .replace("conv = [4]", "conv = [4, -1]")
        .replace("alpha = [0.5]", "alpha = [1.5]");
    let p = problems(&text);
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(p.len(), 5, "{messages:#?}");
    assert!(
        messages[0].starts_with("unknown field `clases`"),
        "{messages:#?}"
    );
    assert_eq!(p[0].help.as_deref(), Some("did you mean `classes`?"));
    assert!(
        messages
            .iter()
            .any(|m| m.contains("invalid type: string \"two\""))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("unknown field `batch_size`"))
    );
    assert!(messages.iter().any(|m| m.contains("found -1")));
    assert!(
        messages
            .iter()
            .any(|m| m.contains("alpha must be within [0, 1]"))
    );
}

#[test]
fn ranges_expand_to_axis_values() {
    let m = grid_with(
        "seed = { range = [0, 5] }\ntemperature = { start = 1, stop = 4, step = 1.5 }\nalpha = 0.5",
    );
    assert_eq!(m.grid.seeds, vec![0, 1, 2, 3, 4]);
    assert_eq!(m.grid.temperatures, vec![1.0, 2.5, 4.0]);
    assert_eq!(m.grid.alphas, vec![0.5]);
    let p = problems(&GOOD.replace("seed = [1, 0]", "seed = { range = [0, 5], stpe = 1 }"));
    assert!(
        p[0].message.contains("unknown field `stpe`"),
        "{}",
        p[0].message
    );
    let p = problems(&GOOD.replace("temperature = [4.0]", "temperature = { range = [-1, 2] }"));
    assert!(
        p[0].message.contains("temperature must be > 0"),
        "{}",
        p[0].message
    );
}

#[test]
fn baselines_are_not_multiplied_by_kd_axes() {
    let m = grid_with("seed = [0, 1]\ntemperature = [1, 4, 20]\nalpha = [0.1, 0.9]");
    let cells = m.grid.cells();
    // 2 seeds x (1 baseline + 3 x 2 distilled).
    assert_eq!(cells.len(), 2 * (1 + 6));
    assert_eq!(cells.iter().filter(|c| c.kd.is_none()).count(), 2);
}

#[test]
fn zipped_axes_move_together() {
    let m = grid_with(
        "seed = [0]\ntemperature = [1, 4, 20]\nalpha = [0.1, 0.5, 0.9]\nzip = [[\"temperature\", \"alpha\"]]",
    );
    let kd: Vec<(f64, f64)> = m.grid.cells().iter().filter_map(|c| c.kd).collect();
    assert_eq!(kd, vec![(1.0, 0.1), (4.0, 0.5), (20.0, 0.9)]);
    let p = problems(&GOOD.replace(
        "alpha = [0.5]",
        "alpha = [0.5, 0.6]\nzip = [[\"temperature\", \"alpah\"], [\"temperature\", \"alpha\"]]",
    ));
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec!["unknown axis `alpah`", "`temperature` is zipped twice"],
        "{p:#?}"
    );
    assert_eq!(p[0].help.as_deref(), Some("did you mean `alpha`?"));
    let p = problems(&GOOD.replace(
        "alpha = [0.5]",
        "alpha = [0.5, 0.6]\nzip = [[\"temperature\", \"alpha\"], [\"seed\"]]",
    ));
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "zipped axes must have equal lengths: `temperature` has 1, `alpha` has 2",
            "a zip group needs at least two axes",
        ],
        "{p:#?}"
    );
}

#[test]
fn exclude_and_include_edit_the_product() {
    let m = grid_of(
        "exclude = [{ student = \"student\", temperature = { gt = 2 }, seed = 1 }]\ninclude = [{ chain = [\"student\", \"teacher\"], seed = 7, temperature = [2, 8] }]",
    );
    let cells = m.grid.cells();
    // seed 1 loses its distilled cell; seed 7 gains two cells of a new chain.
    assert_eq!(cells.len(), 4 - 1 + 2);
    assert!(!cells.iter().any(|c| c.seed == 1 && c.kd.is_some()));
    let extra: Vec<_> = cells.iter().filter(|c| c.seed == 7).collect();
    assert_eq!(extra.len(), 2);
    assert!(
        extra
            .iter()
            .all(|c| c.chain == ["student", "teacher"] && c.kd.unwrap().1 == 0.5)
    );
    let m = grid_of("exclude = [{ chain = [\"student\"] }]");
    assert!(m.grid.cells().iter().all(|c| c.chain.len() == 2));
    assert!(m.warnings.is_empty());
    let m = grid_of("exclude = [{ seed = 99 }]");
    assert_eq!(
        m.warnings[0].message,
        "this `exclude` entry matches no cell"
    );
}

#[test]
fn predicates_are_typed() {
    let p = problems(&GOOD.replace(
        "chains = [[\"student\"], [\"teacher\", \"student\"]]",
        "chains = [[\"student\"]]\nexclude = [{ temperature = \"hot\" }, { teacher = 3 }, { seed = { around = 2 } }, { tempo = 1 }]\ninclude = [{ seed = 1 }]",
    ));
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "`temperature` takes numbers, found \"hot\"",
            "`teacher` takes model names, found 3",
            "unknown comparison `around`",
            "unknown axis `tempo`",
            "an `include` entry needs a `chain`",
        ],
        "{p:#?}"
    );
}

#[test]
fn adding_axis_values_keeps_existing_stage_ids() {
    let ids = |m: &Manifest| -> Vec<String> {
        crate::plan::expand(m, "")
            .stages
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    };
    let small = ids(&grid_with(
        "seed = [0, 1]\ntemperature = [4]\nalpha = [0.5]",
    ));
    let large = ids(&grid_with(
        "seed = [5, 0, 1, 2]\ntemperature = [1, 4]\nalpha = [0.5, 0.9]",
    ));
    for id in &small {
        assert!(large.contains(id), "stage {id} changed when axes grew");
    }
}

#[test]
fn model_families_resolve_to_architectures() {
    let text = GOOD.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nfamily = \"plain-cnn\"\nsize = 4\n\n[models.mlp]\nfamily = \"mlp\"\ndense = [64, 32]\ndropout = 0.2\n\n[models.pooled]\nconv = [8, 8, 16]\npool = [2]\nbatch-norm = true",
    );
    let m = parse(Path::new("m.toml"), &text).unwrap();
    let s = &m.models["student"];
    assert_eq!(
        (s.conv.clone(), s.pool.clone(), s.batch_norm),
        (vec![16, 16, 32, 32], Some(vec![2, 4]), true)
    );
    assert_eq!(s.family, "plain-cnn-4");
    assert!(m.models["mlp"].conv.is_empty());
    assert_eq!(m.models["mlp"].dropout, Some(0.2));
    assert!(m.models["pooled"].pools_after(1) && !m.models["pooled"].pools_after(0));

    let bad = GOOD.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nfamily = \"plain-cnn\"\nsize = 3\n\n[models.mlp]\nfamily = \"mlp\"\nconv = [4]\ndropout = 0.5\n\n[models.pooled]\nconv = [8]\npool = [2]",
    );
    let p = problems(&bad);
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "`models.student.size` = 3 is not a plain-cnn size",
            "`models.mlp.conv` does not apply to `family = \"mlp\"`",
            "`models.mlp.dropout` needs a hidden dense layer to act on",
            "`models.pooled.pool` names conv layer 2, but the model has 1",
        ],
        "{p:#?}"
    );
}

#[test]
fn test_set_selection_must_be_explicit() {
    let p = problems(&GOOD.replace("lr = 0.01", "lr = 0.01\nselect = \"best-test\""));
    assert_eq!(
        p[0].message,
        "selecting epochs on the test set makes the reported accuracy optimistic"
    );
    let m = parse(
        Path::new("m.toml"),
        &GOOD.replace(
            "lr = 0.01",
            "lr = 0.01\nselect = \"best-test\"\nallow-test-selection = true",
        ),
    )
    .unwrap();
    assert_eq!(m.training.select, Selection::BestTest);
    let p = problems(&GOOD.replace("lr = 0.01", "lr = 0.01\nselect = \"best-val\""));
    assert_eq!(
        p[0].message,
        "`select = \"best-val\"` needs a validation split"
    );
    let p = problems(&GOOD.replace("lr = 0.01", "lr = 0.01\nvalidation = 512"));
    assert!(
        p[0].message.contains("holds out 512 images of a 512-image"),
        "{}",
        p[0].message
    );
    let p = problems(&GOOD.replace("lr = 0.01", "lr = 0.01\nvalidation = 0.0001"));
    assert!(
        p[0].message.contains("holds out 0 images"),
        "{}",
        p[0].message
    );
}

#[test]
fn profiles_merge_over_the_manifest() {
    let text = format!(
        "{GOOD}\n[profiles.ci.training]\nepochs = 1\n\n[profiles.ci.grid]\nseed = [0]\n\n[profiles.fast]\nname = \"quick\"\ntraining = {{ lr = 0.5 }}\n"
    );
    let base = parse(Path::new("m.toml"), &text).unwrap();
    assert_eq!(base.profiles, vec!["ci", "fast"]);
    assert_eq!(base.training.epochs, 2);
    let ci = parse_profile(Path::new("m.toml"), &text, Some("ci")).unwrap();
    assert_eq!(
        (ci.name.as_str(), ci.training.epochs, ci.grid.seeds.clone()),
        ("tiny-ci", 1, vec![0])
    );
    assert_eq!(
        ci.training.batch_size, 32,
        "unset keys keep the manifest's values"
    );
    let fast = parse_profile(Path::new("m.toml"), &text, Some("fast")).unwrap();
    assert_eq!((fast.name.as_str(), fast.training.lr), ("quick", 0.5));
    let err = parse_profile(Path::new("m.toml"), &text, Some("cl")).unwrap_err();
    assert_eq!(err.problems()[0].message, "profile `cl` is not defined");
    let bad = format!("{GOOD}\n[profiles.ci.training]\nepocs = 1\n");
    let err = parse_profile(Path::new("m.toml"), &bad, Some("ci")).unwrap_err();
    assert_eq!(
        err.problems()[0].location,
        "m.toml:28:1",
        "located in the profile"
    );
}

#[test]
fn assistants_outside_the_size_range_warn() {
    let text = GOOD
        .replace(
            "[models.student]\nconv = [4]",
            "[models.student]\nconv = [4]\n\n[models.big]\nconv = [64, 64]\ndense = [256]",
        )
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"]]",
            "chains = [[\"teacher\", \"big\", \"student\"]]",
        );
    let m = parse(Path::new("m.toml"), &text).unwrap();
    assert_eq!(m.warnings.len(), 1);
    assert!(
        m.warnings[0]
            .message
            .starts_with("in `teacher > big > student` an assistant is not between"),
        "{}",
        m.warnings[0].message
    );
}

#[test]
fn models_override_training_settings() {
    let m = parse(
        Path::new("m.toml"),
        &GOOD.replace(
            "dense = [32]",
            "dense = [32]\nepochs = 5\nbatch-size = 128\nweight-decay = 0.001",
        ),
    )
    .unwrap();
    let t = m.training_for("teacher");
    assert_eq!(
        (t.epochs, t.batch_size, t.weight_decay),
        (5, 128, Some(0.001))
    );
    assert_eq!(
        m.training_for("student"),
        m.training,
        "other models keep the defaults"
    );
}
