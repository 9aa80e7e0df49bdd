//! Validated scalar values of the manifest language.
//!
//! Each newtype checks its range inside `Deserialize`, so a bad value is reported by the TOML
//! parser with the exact span of the offending text.

use serde::{Deserialize, Serialize};

/// A strictly positive integer: epochs, batch size, layer widths, dataset sizes.
///
/// ```toml
/// epochs = 3
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "u64")]
pub struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Count, E> {
                Count::try_from(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                Count::try_from(i64::try_from(v).unwrap_or(i64::MAX)).map_err(E::custom)
            }
        }
        d.deserialize_i64(V)
    }
}

impl Count {
    /// The value as `usize`.
    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if v > 0 {
            Ok(Count(v as usize))
        } else {
            Err(format!("expected a positive integer, found {v}"))
        }
    }
}

impl From<Count> for u64 {
    fn from(c: Count) -> u64 {
        c.0 as u64
    }
}

/// Defines a validated `f64` newtype: `$ok` decides whether a value is accepted, `$msg` says
/// what was expected (followed by the value found).
macro_rules! bounded_f64 {
    ($(#[$doc:meta])* $name:ident, $ok:expr, $msg:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(try_from = "f64", into = "f64")]
        pub struct $name(f64);

        impl $name {
            /// The value as `f64`.
            pub fn get(self) -> f64 {
                self.0
            }
        }

        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(v: f64) -> Result<Self, String> {
                let ok: fn(f64) -> bool = $ok;
                if ok(v) {
                    Ok($name(v))
                } else {
                    Err(format!(concat!($msg, ", found {}"), v))
                }
            }
        }

        impl From<$name> for f64 {
            fn from(v: $name) -> f64 {
                v.0
            }
        }
    };
}

bounded_f64!(
    /// Softmax temperature of distillation, `T > 0`.
    ///
    /// ```toml
    /// temperature = [1.0, 4.0, 20.0]
    /// ```
    Temperature,
    |v| v.is_finite() && v > 0.0,
    "temperature must be > 0"
);

bounded_f64!(
    /// Weight of the distillation term, `0 <= alpha <= 1` (`1 - alpha` weighs the hard-label
    /// loss).
    ///
    /// ```toml
    /// alpha = [0.5, 0.9]
    /// ```
    Alpha,
    |v| (0.0..=1.0).contains(&v),
    "alpha must be within [0, 1]"
);

bounded_f64!(
    /// A strictly positive, finite real: learning rate.
    ///
    /// ```toml
    /// lr = 0.001
    /// ```
    Positive,
    |v| v.is_finite() && v > 0.0,
    "expected a positive number"
);

bounded_f64!(
    /// A finite real in `[0, 1)`: momentum, weight decay, noise levels.
    ///
    /// ```toml
    /// momentum = 0.9
    /// ```
    Fraction,
    |v| (0.0..1.0).contains(&v),
    "expected a number within [0, 1)"
);
