//! Grid axis values written as a list, a single value, or a numeric range.
//!
//! ```toml
//! seed = [0, 1, 2]                                     # a list
//! seed = { range = [0, 10] }                           # 0, 1, ..., 9 (stop excluded, as in Python)
//! seed = { range = [0, 10], step = 2 }                 # 0, 2, 4, 6, 8
//! temperature = { start = 1.0, stop = 4.0, step = 1.0 } # 1, 2, 3, 4 (stop included when reached)
//! alpha = 0.5                                          # one value
//! ```

use super::values::{Alpha, Temperature};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// Longest axis a range may produce: a guard against `step` typos.
const MAX_RANGE_LEN: usize = 100_000;

/// The values of one axis, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis<T>(pub Vec<T>);

/// A value type an axis may hold, built from a number of a range.
pub(crate) trait AxisValue: Sized {
    /// Converts one generated number, or says why it is not a valid value.
    fn from_number(x: f64) -> Result<Self, String>;
}

impl AxisValue for u64 {
    fn from_number(x: f64) -> Result<Self, String> {
        if x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53) {
            Ok(x as u64)
        } else {
            Err(format!("seeds are non-negative integers, found {x}"))
        }
    }
}

impl AxisValue for Temperature {
    fn from_number(x: f64) -> Result<Self, String> {
        Temperature::try_from(x)
    }
}

impl AxisValue for Alpha {
    fn from_number(x: f64) -> Result<Self, String> {
        Alpha::try_from(x)
    }
}

/// Numbers from a range table; `range = [a, b]` excludes `b`, `start`/`stop` include `stop`.
fn expand_range(
    range: Option<[f64; 2]>,
    start: Option<f64>,
    stop: Option<f64>,
    step: Option<f64>,
) -> Result<Vec<f64>, String> {
    let step = step.unwrap_or(1.0);
    if !(step.is_finite() && step > 0.0) {
        return Err(format!("range `step` must be > 0, found {step}"));
    }
    let (start, stop, inclusive) = match (range, start, stop) {
        (Some([a, b]), None, None) => (a, b, false),
        (None, Some(a), Some(b)) => (a, b, true),
        _ => {
            return Err(
                "a range is `{ range = [start, stop] }` (stop excluded) or `{ start = .., stop = .., step = .. }` (stop included)"
                    .into(),
            );
        }
    };
    // Tolerance so that 0.1 + 2 * 0.1 still reaches 0.3 when it is the stop.
    let slack = step * 1e-9;
    let mut values = Vec::new();
    for i in 0.. {
        // Rounded so that ids see 0.3 rather than 0.30000000000000004.
        let x = ((start + i as f64 * step) * 1e9).round() / 1e9;
        let more = if inclusive {
            x <= stop + slack
        } else {
            x < stop - slack
        };
        if !more {
            break;
        }
        if values.len() == MAX_RANGE_LEN {
            return Err(format!("the range has more than {MAX_RANGE_LEN} values"));
        }
        values.push(x);
    }
    if values.is_empty() {
        return Err(format!("the range from {start} to {stop} is empty"));
    }
    Ok(values)
}

impl<'de, T: Deserialize<'de> + AxisValue> Deserialize<'de> for Axis<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AxisVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de> + AxisValue> Visitor<'de> for AxisVisitor<T> {
            type Value = Axis<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of values, one value, or a range table like `{ range = [0, 10] }`",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element()? {
                    values.push(v);
                }
                Ok(Axis(values))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_number(v as f64)
                    .map(|v| Axis(vec![v]))
                    .map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::from_number(v as f64)
                    .map(|v| Axis(vec![v]))
                    .map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_number(v).map(|v| Axis(vec![v])).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut range, mut start, mut stop, mut step) = (None, None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "range" => range = Some(map.next_value::<[f64; 2]>()?),
                        "start" => start = Some(map.next_value::<f64>()?),
                        "stop" => stop = Some(map.next_value::<f64>()?),
                        "step" => step = Some(map.next_value::<f64>()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["range", "start", "stop", "step"],
                            ));
                        }
                    }
                }
                expand_range(range, start, stop, step)
                    .and_then(|xs| xs.into_iter().map(T::from_number).collect())
                    .map(Axis)
                    .map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_any(AxisVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_their_documented_ends() {
        assert_eq!(
            expand_range(Some([0.0, 4.0]), None, None, None).unwrap(),
            [0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(
            expand_range(None, Some(0.1), Some(0.3), Some(0.1)).unwrap(),
            [0.1, 0.2, 0.3]
        );
        assert!(expand_range(Some([3.0, 3.0]), None, None, None).is_err());
        assert!(expand_range(Some([0.0, 3.0]), None, None, Some(0.0)).is_err());
        assert!(expand_range(Some([0.0, 3.0]), Some(1.0), None, None).is_err());
    }
}

/// How many seeds a group needs, decided while the study runs: seeds 0, 1, 2, ... are added to
/// each group (chain, model, temperature, alpha) until the 95% t interval of its mean test
/// accuracy is narrower than `ci-half-width` on each side, or `max` seeds have run.
///
/// ```toml
/// [grid]
/// seed = { adaptive = { min = 3, max = 20, ci-half-width = 0.005 } }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Adaptive {
    /// Seeds every group runs first (at least 2: one seed has no interval).
    pub min: usize,
    /// Most seeds a group runs.
    pub max: usize,
    /// Target half-width of the interval, in accuracy units (0.005 = half a point).
    pub ci_half_width: f64,
}

/// `grid.seed` as written: seed values, or an [`Adaptive`] rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SeedAxis {
    /// Listed seeds.
    Values(Axis<u64>),
    /// Seeds added while running.
    Adaptive(Adaptive),
}

impl<'de> Deserialize<'de> for SeedAxis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        match value {
            toml::Value::Table(t) if t.contains_key("adaptive") => {
                if let Some(other) = t.keys().find(|k| *k != "adaptive") {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` next to `adaptive`"
                    )));
                }
                let rule = t["adaptive"].clone();
                Adaptive::deserialize(rule)
                    .map(SeedAxis::Adaptive)
                    .map_err(|e| de::Error::custom(e.message().to_string()))
            }
            other => Axis::<u64>::deserialize(other)
                .map(SeedAxis::Values)
                .map_err(|e| de::Error::custom(e.message().to_string())),
        }
    }
}
