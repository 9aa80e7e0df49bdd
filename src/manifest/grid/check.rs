//! Checking `[grid]`: axis values, chains, `zip`, `include` and `exclude`, against the models.
//!
//! Long because every rule of `[grid]` is checked here, together, so that each problem is
//! reported once with its span and the checks can see each other's results.

use super::{
    AxisName, Field, Grid, Include, Predicate, RoleSeedAxes, TeacherSeed, Test, Value, product,
};
use crate::manifest::axis::{Adaptive, Axis, SeedAxis};
use crate::manifest::error::Problems;
use crate::manifest::values::{Alpha, Count, Temperature};
use crate::manifest::{DEFAULT_MAX_CELLS, ModelSpec, ROLE_AXES, backticked, cost, suggest};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

type Names = Spanned<Vec<Spanned<String>>>;
type Entry = Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGrid {
    seed: Spanned<SeedAxis>,
    init_seed: Option<Spanned<Axis<u64>>>,
    order_seed: Option<Spanned<Axis<u64>>>,
    augment_seed: Option<Spanned<Axis<u64>>>,
    temperature: Option<Spanned<Axis<Temperature>>>,
    alpha: Option<Spanned<Axis<Alpha>>>,
    teacher: Option<Names>,
    assistant: Option<Names>,
    student: Option<Names>,
    chains: Spanned<Vec<Names>>,
    max_cells: Option<Count>,
    #[serde(default)]
    teacher_seed: TeacherSeed,
    zip: Option<Vec<Names>>,
    include: Option<Vec<Entry>>,
    exclude: Option<Vec<Entry>>,
}

/// Written order, duplicates dropped.
fn unique<T: Eq + std::hash::Hash + Clone>(v: &[T]) -> Vec<T> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    v.iter().filter(|x| seen.insert(*x)).cloned().collect()
}

/// Refuses adaptive rules that cannot work.
fn check_adaptive(a: &Adaptive, span: std::ops::Range<usize>, problems: &mut Problems) {
    if a.min < 2 || a.min > a.max || a.max > 1000 {
        problems.push(
            Some(span.clone()),
            format!(
                "`grid.seed.adaptive` needs 2 <= min <= max <= 1000, found min = {}, max = {}",
                a.min, a.max
            ),
            Some("one seed has no interval: start from `min = 3`".into()),
        );
    }
    if !(a.ci_half_width.is_finite() && a.ci_half_width > 0.0) {
        problems.push(
            Some(span),
            format!(
                "`grid.seed.adaptive.ci-half-width` must be > 0, found {}",
                a.ci_half_width
            ),
            Some("e.g. `ci-half-width = 0.005` (half a point of accuracy)".into()),
        );
    }
}

/// Checks `[grid]` against the models; `whole` is the span of the table, for problems of the
/// grid as a whole.
pub(crate) fn check_grid(
    g: &RawGrid,
    whole: std::ops::Range<usize>,
    models: &BTreeMap<String, ModelSpec>,
    shape: Option<([usize; 3], usize)>,
    problems: &mut Problems,
    warnings: &mut Problems,
) -> Grid {
    if let SeedAxis::Adaptive(a) = g.seed.get_ref() {
        check_adaptive(a, g.seed.span(), problems);
    }
    let mut seed_axis = |axis: &Spanned<Axis<u64>>, key: &str| {
        if axis.get_ref().0.is_empty() {
            problems.push(Some(axis.span()), format!("`grid.{key}` is empty"), None);
        }
        unique(&axis.get_ref().0)
    };
    let (seeds, adaptive) = match g.seed.get_ref() {
        SeedAxis::Values(axis) => (
            seed_axis(&Spanned::new(g.seed.span(), axis.clone()), "seed"),
            None,
        ),
        SeedAxis::Adaptive(a) => ((0..a.max.max(1) as u64).collect(), Some(*a)),
    };
    let role_seeds = RoleSeedAxes {
        init: g.init_seed.as_ref().map(|a| seed_axis(a, "init-seed")),
        order: g.order_seed.as_ref().map(|a| seed_axis(a, "order-seed")),
        augment: g
            .augment_seed
            .as_ref()
            .map(|a| seed_axis(a, "augment-seed")),
    };

    let model_names: Vec<&str> = models.keys().map(String::as_str).collect();
    let check_name = |name: &str, span: std::ops::Range<usize>, problems: &mut Problems| {
        if !models.contains_key(name) {
            problems.push(
                Some(span),
                format!("undefined model `{name}`"),
                suggest(name, &model_names)
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("defined models: {}", backticked(&model_names)))),
            );
        }
    };

    let mut roles = BTreeMap::new();
    for (role, axis) in [
        ("teacher", &g.teacher),
        ("assistant", &g.assistant),
        ("student", &g.student),
    ] {
        if let Some(axis) = axis {
            if axis.get_ref().is_empty() {
                problems.push(Some(axis.span()), format!("`grid.{role}` is empty"), None);
            }
            for name in axis.get_ref() {
                check_name(name.get_ref(), name.span(), problems);
            }
            let names: Vec<String> = axis.get_ref().iter().map(|n| n.get_ref().clone()).collect();
            roles.insert(role.to_string(), unique(&names));
        }
    }

    if g.chains.get_ref().is_empty() {
        problems.push(
            Some(g.chains.span()),
            "`grid.chains` is empty",
            Some("e.g. `chains = [[\"student\"], [\"teacher\", \"student\"]]`".into()),
        );
    }
    let defined_roles: Vec<String> = roles.keys().cloned().collect();
    let check_chain = |chain: &Names, problems: &mut Problems| -> Vec<String> {
        if chain.get_ref().is_empty() {
            problems.push(Some(chain.span()), "a chain needs at least one model", None);
        }
        for item in chain.get_ref() {
            match item.get_ref().strip_prefix('@') {
                Some(role) if !ROLE_AXES.contains(&role) => problems.push(
                    Some(item.span()),
                    format!("unknown role placeholder `{}`", item.get_ref()),
                    Some(format!(
                        "placeholders are {}",
                        backticked(&ROLE_AXES.map(|r| format!("@{r}")))
                    )),
                ),
                Some(role) if !defined_roles.iter().any(|r| r == role) => problems.push(
                    Some(item.span()),
                    format!("chain uses `@{role}` but `grid.{role}` is not set"),
                    Some(format!("add `{role} = [\"...\"]` to `[grid]`")),
                ),
                Some(_) => {}
                None => check_name(item.get_ref(), item.span(), problems),
            }
        }
        chain
            .get_ref()
            .iter()
            .map(|n| n.get_ref().clone())
            .collect()
    };
    let chains: Vec<Vec<String>> = g
        .chains
        .get_ref()
        .iter()
        .map(|c| check_chain(c, problems))
        .collect();
    let include_chains: Vec<Vec<String>> = g
        .include
        .iter()
        .flatten()
        .filter_map(|e| e.get_ref().iter().find(|(k, _)| k.get_ref() == "chain"))
        .filter_map(|(_, v)| names_of(v))
        .collect();
    let any_kd = chains.iter().chain(&include_chains).any(|c| c.len() > 1);

    let mut real_axis = |values: Option<(Vec<f64>, std::ops::Range<usize>)>, key: &str| match values
    {
        Some((v, span)) if v.is_empty() => {
            problems.push(Some(span), format!("`grid.{key}` is empty"), None);
            Vec::new()
        }
        Some((v, _)) => {
            let mut out: Vec<f64> = Vec::new();
            for x in v {
                if !out.iter().any(|y| y.to_bits() == x.to_bits()) {
                    out.push(x);
                }
            }
            out
        }
        None if any_kd => {
            problems.push(
                Some(whole.clone()),
                format!("`grid.{key}` is required when a chain distills"),
                None,
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let temperatures = real_axis(
        g.temperature
            .as_ref()
            .map(|t| (t.get_ref().0.iter().map(|x| x.get()).collect(), t.span())),
        "temperature",
    );
    let alphas = real_axis(
        g.alpha
            .as_ref()
            .map(|a| (a.get_ref().0.iter().map(|x| x.get()).collect(), a.span())),
        "alpha",
    );

    let mut grid = Grid {
        seeds,
        adaptive,
        role_seeds,
        teacher_seed: g.teacher_seed,
        temperatures,
        alphas,
        roles,
        chains,
        zip: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
    };
    let axes = grid.axes();
    let set: Vec<AxisName> = axes
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(a, _)| *a)
        .collect();
    let axis_name = |key: &Spanned<String>, problems: &mut Problems| {
        let axis = AxisName::parse(key.get_ref());
        if axis.is_none() {
            let keys = AxisName::ALL.map(AxisName::key);
            problems.push(
                Some(key.span()),
                format!("unknown axis `{}`", key.get_ref()),
                suggest(key.get_ref(), &keys)
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("axes: {}", backticked(&keys)))),
            );
        }
        axis
    };

    for group in g.zip.iter().flatten() {
        let mut members = Vec::new();
        for key in group.get_ref() {
            let Some(axis) = axis_name(key, problems) else {
                continue;
            };
            if !set.contains(&axis) {
                problems.push(
                    Some(key.span()),
                    format!("`zip` names `{}`, which `[grid]` does not set", axis.key()),
                    None,
                );
            } else if members.contains(&axis) || grid.zip.iter().any(|z| z.contains(&axis)) {
                problems.push(
                    Some(key.span()),
                    format!("`{}` is zipped twice", axis.key()),
                    None,
                );
            } else {
                members.push(axis);
            }
        }
        if group.get_ref().len() < 2 {
            problems.push(
                Some(group.span()),
                "a zip group needs at least two axes",
                None,
            );
        }
        let lens: Vec<usize> = members.iter().map(|a| axes[a].len()).collect();
        if lens.windows(2).any(|w| w[0] != w[1]) {
            problems.push(
                Some(group.span()),
                format!(
                    "zipped axes must have equal lengths: {}",
                    members
                        .iter()
                        .zip(&lens)
                        .map(|(a, n)| format!("`{}` has {n}", a.key()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            );
        }
        grid.zip.push(members);
    }

    for entry in g.include.iter().flatten() {
        let mut chain = None;
        let mut axes = BTreeMap::new();
        for (key, value) in entry.get_ref() {
            if key.get_ref() == "chain" {
                if let Some(names) = chain_of(value, problems) {
                    let spanned = Spanned::new(
                        value.span(),
                        names
                            .into_iter()
                            .map(|n| Spanned::new(value.span(), n))
                            .collect(),
                    );
                    chain = Some(check_chain(&spanned, problems));
                }
                continue;
            }
            let Some(axis) = axis_name(key, problems) else {
                continue;
            };
            if let Some(v) = values(axis, value, models, problems) {
                axes.insert(axis, v);
            }
        }
        match chain {
            Some(chain) => grid.include.push(Include { chain, axes }),
            None => problems.push(
                Some(entry.span()),
                "an `include` entry needs a `chain`",
                Some("e.g. `{ chain = [\"teacher\", \"student\"], seed = 7 }`".into()),
            ),
        }
    }

    let mut exclude_spans = Vec::new();
    for entry in g.exclude.iter().flatten() {
        let mut tests = Vec::new();
        if entry.get_ref().is_empty() {
            problems.push(
                Some(entry.span()),
                "an empty `exclude` entry would exclude every cell",
                None,
            );
        }
        for (key, value) in entry.get_ref() {
            if key.get_ref() == "chain" {
                if let Some(names) = chain_of(value, problems) {
                    tests.push((Field::Chain, Test::Chain(names)));
                }
                continue;
            }
            let Some(axis) = axis_name(key, problems) else {
                continue;
            };
            let test = match value.get_ref() {
                toml::Value::Table(t) if axis.role().is_none() => {
                    range_test(t, value.span(), problems)
                }
                _ => values(axis, value, models, problems).map(Test::In),
            };
            if let Some(test) = test {
                tests.push((Field::Axis(axis), test));
            }
        }
        grid.exclude.push(Predicate(tests));
        exclude_spans.push(entry.span());
    }

    let limit = g.max_cells.map_or(DEFAULT_MAX_CELLS, Count::get);
    let bound = grid.upper_bound();
    if bound > limit {
        problems.push(
            Some(whole),
            format!("the grid has {bound} cells, over the limit of {limit}"),
            Some("shrink an axis, or raise `grid.max-cells` if this is intended".into()),
        );
    } else if problems.is_empty() {
        warn(&grid, g, &exclude_spans, models, shape, warnings);
    }
    grid
}

/// Warnings about a valid grid: idle `exclude` entries, assistants outside the size range.
fn warn(
    grid: &Grid,
    g: &RawGrid,
    exclude_spans: &[std::ops::Range<usize>],
    models: &BTreeMap<String, ModelSpec>,
    shape: Option<([usize; 3], usize)>,
    warnings: &mut Problems,
) {
    let axes = grid.axes();
    // Profiles shrink grids on purpose: an exclude entry they leave idle is expected.
    let excludes = if warnings.profile.is_none() {
        &grid.exclude[..]
    } else {
        &[]
    };
    for (p, span) in excludes.iter().zip(exclude_spans) {
        let hits = grid
            .chains
            .iter()
            .flat_map(|t| product(t, &axes, &grid.zip))
            .filter(|c| p.matches(c))
            .count();
        if hits == 0 {
            warnings.push(
                Some(span.clone()),
                "this `exclude` entry matches no cell",
                Some("check its axis values against the grid".into()),
            );
        }
    }
    let Some((input, classes)) = shape else {
        return;
    };
    let params = |m: &str| cost(&models[m], input, classes).params;
    for (template, raw) in grid.chains.iter().zip(g.chains.get_ref()) {
        let odd = product(template, &axes, &grid.zip).into_iter().find(|c| {
            let n = c.chain.len();
            n > 2
                && c.chain[1..n - 1].iter().any(|a| {
                    !(params(&c.chain[n - 1]) <= params(a) && params(a) <= params(&c.chain[0]))
                })
        });
        if let Some(c) = odd {
            warnings.push(
                Some(raw.span()),
                format!(
                    "in `{}` an assistant is not between teacher and student in size ({} parameters)",
                    c.chain.join(" > "),
                    c.chain
                        .iter()
                        .map(|m| params(m).to_string())
                        .collect::<Vec<_>>()
                        .join(" > ")
                ),
                Some("teacher assistants are meant to bridge a size gap".into()),
            );
        }
    }
}

/// The model names of a `chain` key, or a problem saying what a chain is.
fn chain_of(value: &Spanned<toml::Value>, problems: &mut Problems) -> Option<Vec<String>> {
    let names = names_of(value);
    if names.is_none() {
        problems.push(
            Some(value.span()),
            "`chain` is a list of model names, teacher first",
            None,
        );
    }
    names
}

fn names_of(value: &Spanned<toml::Value>) -> Option<Vec<String>> {
    value
        .get_ref()
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The values an `include` or `exclude` entry gives for `axis`: one value or a list, typed.
fn values(
    axis: AxisName,
    value: &Spanned<toml::Value>,
    models: &BTreeMap<String, ModelSpec>,
    problems: &mut Problems,
) -> Option<Vec<Value>> {
    let items: Vec<&toml::Value> = match value.get_ref() {
        toml::Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let mut out = Vec::new();
    for item in items {
        let v = match (axis, item) {
            (a, toml::Value::Integer(i)) if a.is_seed() && *i >= 0 => Ok(Value::Seed(*i as u64)),
            (a, _) if a.is_seed() => Err(format!(
                "`{}` takes non-negative integers, found {item}",
                a.key()
            )),
            (AxisName::Temperature, v) => number(v)
                .ok_or_else(|| format!("`temperature` takes numbers, found {v}"))
                .and_then(|x| Temperature::try_from(x).map(|t| Value::Real(t.get()))),
            (AxisName::Alpha, v) => number(v)
                .ok_or_else(|| format!("`alpha` takes numbers, found {v}"))
                .and_then(|x| Alpha::try_from(x).map(|t| Value::Real(t.get()))),
            (_, toml::Value::String(m)) if models.contains_key(m) => Ok(Value::Model(m.clone())),
            (_, toml::Value::String(m)) => Err(format!("undefined model `{m}`")),
            (a, v) => Err(format!("`{}` takes model names, found {v}", a.key())),
        };
        match v {
            Ok(v) => out.push(v),
            Err(message) => {
                problems.push(Some(value.span()), message, None);
                return None;
            }
        }
    }
    if out.is_empty() {
        problems.push(
            Some(value.span()),
            format!("no values for `{}`", axis.key()),
            None,
        );
        return None;
    }
    Some(out)
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(x) => Some(*x),
        _ => None,
    }
}

fn range_test(
    table: &toml::Table,
    span: std::ops::Range<usize>,
    problems: &mut Problems,
) -> Option<Test> {
    let mut bounds = [None; 4];
    for (key, v) in table {
        let slot = ["lt", "le", "gt", "ge"].iter().position(|k| k == key);
        match (slot, number(v)) {
            (Some(i), Some(x)) => bounds[i] = Some(x),
            (Some(_), None) => {
                problems.push(
                    Some(span.clone()),
                    format!("`{key}` takes a number, found {v}"),
                    None,
                );
                return None;
            }
            (None, _) => {
                problems.push(
                    Some(span.clone()),
                    format!("unknown comparison `{key}`"),
                    Some("comparisons are `lt`, `le`, `gt`, `ge`".into()),
                );
                return None;
            }
        }
    }
    let [lt, le, gt, ge] = bounds;
    Some(Test::Range { lt, le, gt, ge })
}
