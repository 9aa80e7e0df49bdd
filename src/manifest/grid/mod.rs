//! The grid: axes, zipped axes, `include` and `exclude`, and the cells they make.
//!
//! A cell is a concrete chain at one value of every axis it uses. Axes multiply (Cartesian
//! product) unless zipped; a chain of one model (the no-KD baseline) does not use
//! `temperature` or `alpha`, so it is not multiplied by them.
//!
//! Long because expanding cells is one idea: the grid's types and the product that walks them.

mod check;

pub use crate::manifest::axis::Adaptive;
pub(crate) use check::{RawGrid, check_grid};

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Grid axes, chain templates, and the cells added or removed by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Seeds, in the order written; each drives weight init, data order and augmentation.
    /// With an adaptive rule, every seed a group may need (0 to `max - 1`).
    pub seeds: Vec<u64>,
    /// The rule that decides how many of `seeds` each group runs, if any.
    pub adaptive: Option<Adaptive>,
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
/// teacher-seed = "shared"   # one teacher for every student seed: the grid's first seed
/// teacher-seed = 0          # one teacher for every student seed: seed 0, whatever the axis holds
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TeacherSeed {
    /// The cell's seed: one teacher per student seed, with the same seeds.
    #[default]
    Paired,
    /// The grid's first seed: one teacher shared by every student seed.
    Shared,
    /// This seed: one teacher shared by every student seed, unchanged when seeds are added.
    Fixed(u64),
    /// A seed derived from the cell's: one teacher per student seed, with unrelated streams.
    Independent,
}

impl<'de> Deserialize<'de> for TeacherSeed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TeacherSeed;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`\"paired\"`, `\"shared\"`, `\"independent\"` or a seed")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TeacherSeed, E> {
                match v {
                    "paired" => Ok(TeacherSeed::Paired),
                    "shared" => Ok(TeacherSeed::Shared),
                    "independent" => Ok(TeacherSeed::Independent),
                    _ => Err(E::unknown_variant(v, &["paired", "shared", "independent"])),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TeacherSeed, E> {
                u64::try_from(v)
                    .map(TeacherSeed::Fixed)
                    .map_err(|_| E::custom(format!("seeds are non-negative, found {v}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TeacherSeed, E> {
                Ok(TeacherSeed::Fixed(v))
            }
        }
        d.deserialize_any(V)
    }
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
        // Seed-major order, as a study reads: every chain of seed 0, then seed 1, ... Each seed's
        // place on its axis (the first, as a search would find) from one map, not a search per
        // cell: that search made planning quadratic in the number of seeds.
        let mut places: HashMap<(AxisName, u64), usize> = HashMap::new();
        for axis in [
            AxisName::Seed,
            AxisName::InitSeed,
            AxisName::OrderSeed,
            AxisName::AugmentSeed,
        ] {
            for (i, v) in axes.get(&axis).into_iter().flatten().enumerate() {
                if let Value::Seed(s) = v {
                    places.entry((axis, *s)).or_insert(i);
                }
            }
        }
        let position =
            |axis: AxisName, v: u64| places.get(&(axis, v)).copied().unwrap_or(usize::MAX);
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
