//! The grid: axes, zipped axes, `include` and `exclude`, and the cells they make.
//!
//! A cell is a concrete chain at one value of every axis it uses. Axes multiply (Cartesian
//! product) unless zipped; a chain of one model (the no-KD baseline) does not use
//! `temperature` or `alpha`, so it is not multiplied by them.

use super::axis::Axis;
use super::error::Problems;
use super::values::{Alpha, Count, Temperature};
use super::{DEFAULT_MAX_CELLS, ModelSpec, ROLE_AXES, backticked, suggest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use toml::Spanned;

/// Grid axes, chain templates, and the cells added or removed by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Seeds, in the order written; each drives weight init, data order and augmentation.
    pub seeds: Vec<u64>,
    /// Optional per-role seed axes that replace `seed` for one source of randomness, so that
    /// variance can be attributed to each: `init-seed`, `order-seed`, `augment-seed`.
    pub role_seeds: RoleSeedAxes,
    /// Distillation temperatures (only for chains that distill).
    pub temperatures: Vec<f64>,
    /// Distillation weights (only for chains that distill).
    pub alphas: Vec<f64>,
    /// Which seed a chain's teachers and assistants train with.
    pub teacher_seed: TeacherSeed,
    /// Values of the role axes `@teacher`, `@assistant`, `@student`.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Chains of model names or `@role` placeholders, teacher first, student last.
    pub chains: Vec<Vec<String>>,
    /// Groups of axes that move together instead of multiplying.
    pub zip: Vec<Vec<AxisName>>,
    /// Extra cells: sub-grids of their own.
    pub include: Vec<Include>,
    /// Cells to leave out of the product.
    pub exclude: Vec<Predicate>,
}

/// Which seed the teachers and assistants of a cell train with (the chain's last model always
/// trains with the cell's seed).
///
/// ```toml
/// [grid]
/// teacher-seed = "shared"   # one teacher for every student seed
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherSeed {
    /// The cell's seed: one teacher per student seed, with the same seeds.
    #[default]
    Paired,
    /// The grid's first seed: one teacher shared by every student seed.
    Shared,
    /// A seed derived from the cell's: one teacher per student seed, with unrelated streams.
    Independent,
}

/// Per-role seed axes; `None` means the role follows the cell's `seed`.
///
/// ```toml
/// [grid]
/// seed = [0]
/// order-seed = [0, 1, 2, 3]   # vary only the data order
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSeedAxes {
    /// Weight-initialization seeds.
    pub init: Option<Vec<u64>>,
    /// Data-order seeds.
    pub order: Option<Vec<u64>>,
    /// Augmentation seeds.
    pub augment: Option<Vec<u64>>,
}

/// The seed of each source of randomness of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RoleSeeds {
    /// Weight initialization (and dropout masks).
    pub init: u64,
    /// Data order.
    pub order: u64,
    /// Augmentation.
    pub augment: u64,
}

impl RoleSeeds {
    /// Every role with the same seed.
    pub fn uniform(seed: u64) -> Self {
        Self {
            init: seed,
            order: seed,
            augment: seed,
        }
    }
}

/// A grid axis, by its key in `[grid]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AxisName {
    /// `seed`
    Seed,
    /// `init-seed`
    InitSeed,
    /// `order-seed`
    OrderSeed,
    /// `augment-seed`
    AugmentSeed,
    /// `teacher`
    Teacher,
    /// `assistant`
    Assistant,
    /// `student`
    Student,
    /// `temperature`
    Temperature,
    /// `alpha`
    Alpha,
}

impl AxisName {
    /// Every axis, in the order cells are enumerated (first varies slowest).
    pub const ALL: [AxisName; 9] = [
        AxisName::Seed,
        AxisName::InitSeed,
        AxisName::OrderSeed,
        AxisName::AugmentSeed,
        AxisName::Teacher,
        AxisName::Assistant,
        AxisName::Student,
        AxisName::Temperature,
        AxisName::Alpha,
    ];

    /// The key as written in manifests.
    pub fn key(self) -> &'static str {
        match self {
            AxisName::Seed => "seed",
            AxisName::InitSeed => "init-seed",
            AxisName::OrderSeed => "order-seed",
            AxisName::AugmentSeed => "augment-seed",
            AxisName::Teacher => "teacher",
            AxisName::Assistant => "assistant",
            AxisName::Student => "student",
            AxisName::Temperature => "temperature",
            AxisName::Alpha => "alpha",
        }
    }

    fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.key() == key)
    }

    fn role(self) -> Option<&'static str> {
        match self {
            AxisName::Teacher => Some("teacher"),
            AxisName::Assistant => Some("assistant"),
            AxisName::Student => Some("student"),
            _ => None,
        }
    }

    fn is_seed(self) -> bool {
        self <= AxisName::AugmentSeed
    }
}

/// One value of an axis.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A seed.
    Seed(u64),
    /// A temperature or alpha.
    Real(f64),
    /// A model name.
    Model(String),
}

impl Value {
    fn number(&self) -> Option<f64> {
        match self {
            Value::Seed(s) => Some(*s as f64),
            Value::Real(x) => Some(*x),
            Value::Model(_) => None,
        }
    }
}

/// An `include` entry: a chain and axis values replacing the grid's for these extra cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// Chain template.
    pub chain: Vec<String>,
    /// Axis values given by the entry; other axes take the grid's.
    pub axes: BTreeMap<AxisName, Vec<Value>>,
}

/// What an `exclude` entry tests: an axis, or the whole concrete chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// An axis; `teacher`, `assistant` and `student` test the chain's first, middle and last
    /// models.
    Axis(AxisName),
    /// The concrete chain, model by model.
    Chain,
}

/// A test on one field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// The value is one of these (a scalar in the manifest means a list of one).
    In(Vec<Value>),
    /// The chain is exactly this.
    Chain(Vec<String>),
    /// Numeric bounds: `lt`, `le`, `gt`, `ge` (all that are given must hold).
    Range {
        /// Strictly below.
        lt: Option<f64>,
        /// At most.
        le: Option<f64>,
        /// Strictly above.
        gt: Option<f64>,
        /// At least.
        ge: Option<f64>,
    },
}

/// An `exclude` entry: a cell is left out when every test holds.
///
/// ```toml
/// exclude = [
///   { teacher = "big", student = "tiny" },
///   { temperature = { gt = 10 }, alpha = [0.1, 0.2] },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate(pub Vec<(Field, Test)>);

/// One cell, before stages are built.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    /// Concrete model names, teacher first.
    pub chain: Vec<String>,
    /// The cell's seed.
    pub seed: u64,
    /// Per-role seeds.
    pub seeds: RoleSeeds,
    /// `(temperature, alpha)` for chains that distill.
    pub kd: Option<(f64, f64)>,
}

impl CellSpec {
    fn field(&self, axis: AxisName) -> Vec<Value> {
        let n = self.chain.len();
        let models = |r: std::ops::Range<usize>| {
            self.chain[r]
                .iter()
                .map(|m| Value::Model(m.clone()))
                .collect()
        };
        match axis {
            AxisName::Seed => vec![Value::Seed(self.seed)],
            AxisName::InitSeed => vec![Value::Seed(self.seeds.init)],
            AxisName::OrderSeed => vec![Value::Seed(self.seeds.order)],
            AxisName::AugmentSeed => vec![Value::Seed(self.seeds.augment)],
            AxisName::Teacher if n > 1 => models(0..1),
            AxisName::Assistant if n > 2 => models(1..n - 1),
            AxisName::Student => models(n - 1..n),
            AxisName::Temperature => self.kd.map(|k| Value::Real(k.0)).into_iter().collect(),
            AxisName::Alpha => self.kd.map(|k| Value::Real(k.1)).into_iter().collect(),
            AxisName::Teacher | AxisName::Assistant => Vec::new(),
        }
    }
}

impl Predicate {
    /// Whether `cell` matches every test (a test on an axis the cell does not use fails).
    pub fn matches(&self, cell: &CellSpec) -> bool {
        self.0.iter().all(|(field, test)| match (field, test) {
            (Field::Chain, Test::Chain(chain)) => &cell.chain == chain,
            (Field::Axis(a), Test::In(values)) => cell.field(*a).iter().any(|v| values.contains(v)),
            (Field::Axis(a), Test::Range { lt, le, gt, ge }) => {
                cell.field(*a).iter().filter_map(Value::number).any(|x| {
                    lt.is_none_or(|b| x < b)
                        && le.is_none_or(|b| x <= b)
                        && gt.is_none_or(|b| x > b)
                        && ge.is_none_or(|b| x >= b)
                })
            }
            _ => false,
        })
    }
}

impl Grid {
    fn axes(&self) -> BTreeMap<AxisName, Vec<Value>> {
        let seeds = |v: &[u64]| v.iter().map(|&s| Value::Seed(s)).collect::<Vec<_>>();
        let reals = |v: &[f64]| v.iter().map(|&x| Value::Real(x)).collect::<Vec<_>>();
        let mut axes = BTreeMap::from([
            (AxisName::Seed, seeds(&self.seeds)),
            (AxisName::Temperature, reals(&self.temperatures)),
            (AxisName::Alpha, reals(&self.alphas)),
        ]);
        for (axis, values) in [
            (AxisName::InitSeed, &self.role_seeds.init),
            (AxisName::OrderSeed, &self.role_seeds.order),
            (AxisName::AugmentSeed, &self.role_seeds.augment),
        ] {
            if let Some(v) = values {
                axes.insert(axis, seeds(v));
            }
        }
        for axis in [AxisName::Teacher, AxisName::Assistant, AxisName::Student] {
            if let Some(v) = self.roles.get(axis.role().expect("a role axis")) {
                axes.insert(axis, v.iter().map(|m| Value::Model(m.clone())).collect());
            }
        }
        axes
    }

    /// Cells the product would have before `exclude` and deduplication: computed without
    /// enumerating, so a typo like `{ range = [0, 100000] }` is caught cheaply.
    pub fn upper_bound(&self) -> usize {
        let axes = self.axes();
        let from_grid = self
            .chains
            .iter()
            .map(|t| {
                groups(t, &axes, &self.zip)
                    .iter()
                    .map(|g| axes[&g[0]].len())
                    .product::<usize>()
            })
            .sum::<usize>();
        let from_include = self
            .include
            .iter()
            .map(|inc| {
                let mut axes = axes.clone();
                axes.extend(inc.axes.clone());
                groups(&inc.chain, &axes, &[])
                    .iter()
                    .map(|g| axes[&g[0]].len())
                    .product::<usize>()
            })
            .sum::<usize>();
        from_grid.saturating_add(from_include)
    }

    /// Every cell, seed-major, then in chain order; duplicates dropped.
    pub fn cells(&self) -> Vec<CellSpec> {
        let axes = self.axes();
        let mut cells: Vec<CellSpec> = Vec::new();
        for template in &self.chains {
            for cell in product(template, &axes, &self.zip) {
                if !self.exclude.iter().any(|p| p.matches(&cell)) {
                    cells.push(cell);
                }
            }
        }
        for inc in &self.include {
            let mut axes = axes.clone();
            axes.extend(inc.axes.clone());
            cells.extend(product(&inc.chain, &axes, &[]));
        }
        // Seed-major order, as a study reads: every chain of seed 0, then seed 1, ...
        let position = |axis: AxisName, v: u64| {
            axes.get(&axis)
                .and_then(|vs| vs.iter().position(|x| *x == Value::Seed(v)))
                .unwrap_or(usize::MAX)
        };
        let key = |c: &CellSpec| {
            [
                position(AxisName::Seed, c.seed),
                position(AxisName::InitSeed, c.seeds.init),
                position(AxisName::OrderSeed, c.seeds.order),
                position(AxisName::AugmentSeed, c.seeds.augment),
            ]
        };
        cells.sort_by_key(key);
        let mut seen = HashSet::new();
        cells.retain(|c| {
            seen.insert((
                c.chain.clone(),
                c.seed,
                c.seeds,
                c.kd.map(|(t, a)| (t.to_bits(), a.to_bits())),
            ))
        });
        cells
    }
}

/// The axes `template` uses, grouped: zipped axes form one group, every other axis its own.
fn groups(
    template: &[String],
    axes: &BTreeMap<AxisName, Vec<Value>>,
    zip: &[Vec<AxisName>],
) -> Vec<Vec<AxisName>> {
    let used: Vec<AxisName> = AxisName::ALL
        .into_iter()
        .filter(|a| axes.contains_key(a))
        .filter(|a| match a {
            AxisName::Temperature | AxisName::Alpha => template.len() > 1,
            _ => a
                .role()
                .is_none_or(|r| template.iter().any(|t| t.strip_prefix('@') == Some(r))),
        })
        .collect();
    let mut groups: Vec<Vec<AxisName>> = Vec::new();
    for a in &used {
        if groups.iter().any(|g| g.contains(a)) {
            continue;
        }
        match zip.iter().find(|z| z.contains(a)) {
            Some(z) => groups.push(z.iter().copied().filter(|x| used.contains(x)).collect()),
            None => groups.push(vec![*a]),
        }
    }
    groups
}

/// The cells of one chain template over `axes`.
fn product(
    template: &[String],
    axes: &BTreeMap<AxisName, Vec<Value>>,
    zip: &[Vec<AxisName>],
) -> Vec<CellSpec> {
    let groups = groups(template, axes, zip);
    let mut assignments: Vec<BTreeMap<AxisName, &Value>> = vec![BTreeMap::new()];
    for g in &groups {
        let len = axes[&g[0]].len();
        assignments = assignments
            .into_iter()
            .flat_map(|a| {
                (0..len).map(move |i| {
                    let mut a = a.clone();
                    for axis in g {
                        a.insert(*axis, &axes[axis][i]);
                    }
                    a
                })
            })
            .collect();
    }
    assignments
        .into_iter()
        .map(|a| {
            let seed_of = |axis: AxisName| match a.get(&axis) {
                Some(Value::Seed(s)) => Some(*s),
                _ => None,
            };
            let real = |axis: AxisName| match a.get(&axis) {
                Some(Value::Real(x)) => *x,
                _ => unreachable!("distilling chains use temperature and alpha"),
            };
            let seed = seed_of(AxisName::Seed).expect("every cell has a seed");
            let chain: Vec<String> = template
                .iter()
                .map(
                    |t| match t.strip_prefix('@').and_then(|r| a.get(&role_axis(r))) {
                        Some(Value::Model(m)) => m.clone(),
                        _ => t.clone(),
                    },
                )
                .collect();
            CellSpec {
                kd: (chain.len() > 1).then(|| (real(AxisName::Temperature), real(AxisName::Alpha))),
                chain,
                seed,
                seeds: RoleSeeds {
                    init: seed_of(AxisName::InitSeed).unwrap_or(seed),
                    order: seed_of(AxisName::OrderSeed).unwrap_or(seed),
                    augment: seed_of(AxisName::AugmentSeed).unwrap_or(seed),
                },
            }
        })
        .collect()
}

fn role_axis(role: &str) -> AxisName {
    match role {
        "teacher" => AxisName::Teacher,
        "assistant" => AxisName::Assistant,
        _ => AxisName::Student,
    }
}

/// The warning for an `exclude` entry that removes nothing.
pub(crate) const EXCLUDE_MATCHES_NOTHING: &str = "this `exclude` entry matches no cell";

type Names = Spanned<Vec<Spanned<String>>>;
type Entry = Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGrid {
    seed: Spanned<Axis<u64>>,
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
fn unique<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
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
    let mut seed_axis = |axis: &Spanned<Axis<u64>>, key: &str| {
        if axis.get_ref().0.is_empty() {
            problems.push(Some(axis.span()), format!("`grid.{key}` is empty"), None);
        }
        unique(&axis.get_ref().0)
    };
    let seeds = seed_axis(&g.seed, "seed");
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
    let set: Vec<AxisName> = grid
        .axes()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(a, _)| a)
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
        let axes = grid.axes();
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
        let axes = grid.axes();
        for (p, span) in grid.exclude.iter().zip(exclude_spans) {
            let hits = grid
                .chains
                .iter()
                .flat_map(|t| product(t, &axes, &grid.zip))
                .filter(|c| p.matches(c))
                .count();
            if hits == 0 {
                warnings.push(
                    Some(span),
                    "this `exclude` entry matches no cell",
                    Some("check its axis values against the grid".into()),
                );
            }
        }
        if let Some((input, classes)) = shape {
            let params = |m: &str| super::cost(&models[m], input, classes).params;
            for (template, raw) in grid.chains.iter().zip(g.chains.get_ref()) {
                let odd = product(template, &axes, &grid.zip).into_iter().find(|c| {
                    let n = c.chain.len();
                    n > 2
                        && c.chain[1..n - 1].iter().any(|a| {
                            !(params(&c.chain[n - 1]) <= params(a)
                                && params(a) <= params(&c.chain[0]))
                        })
                });
                if let Some(c) = odd {
                    warnings.push(
                        Some(raw.span()),
                        format!(
                            "in `{}` an assistant is not between teacher and student in size ({} parameters)",
                            c.chain.join(" > "),
                            c.chain.iter().map(|m| params(m).to_string()).collect::<Vec<_>>().join(" > ")
                        ),
                        Some("teacher assistants are meant to bridge a size gap".into()),
                    );
                }
            }
        }
    }
    grid
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
