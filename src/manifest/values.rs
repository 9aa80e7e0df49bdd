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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u64")]
pub struct Count(usize);

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

/// Softmax temperature of distillation, `T > 0`.
///
/// ```toml
/// temperature = [1.0, 4.0, 20.0]
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Temperature(f64);

impl Temperature {
    /// The value as `f64`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Temperature {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && v > 0.0 {
            Ok(Temperature(v))
        } else {
            Err(format!("temperature must be > 0, found {v}"))
        }
    }
}

impl From<Temperature> for f64 {
    fn from(t: Temperature) -> f64 {
        t.0
    }
}

/// Weight of the distillation term, `0 <= alpha <= 1` (`1 - alpha` weighs the hard-label loss).
///
/// ```toml
/// alpha = [0.5, 0.9]
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Alpha(f64);

impl Alpha {
    /// The value as `f64`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Alpha {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&v) {
            Ok(Alpha(v))
        } else {
            Err(format!("alpha must be within [0, 1], found {v}"))
        }
    }
}

impl From<Alpha> for f64 {
    fn from(a: Alpha) -> f64 {
        a.0
    }
}

/// A strictly positive, finite real: learning rate.
///
/// ```toml
/// lr = 0.001
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Positive(f64);

impl Positive {
    /// The value as `f64`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Positive {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && v > 0.0 {
            Ok(Positive(v))
        } else {
            Err(format!("expected a positive number, found {v}"))
        }
    }
}

impl From<Positive> for f64 {
    fn from(p: Positive) -> f64 {
        p.0
    }
}

/// A finite real in `[0, 1)`: momentum, weight decay, noise levels.
///
/// ```toml
/// momentum = 0.9
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Fraction(f64);

impl Fraction {
    /// The value as `f64`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Fraction {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..1.0).contains(&v) {
            Ok(Fraction(v))
        } else {
            Err(format!("expected a number within [0, 1), found {v}"))
        }
    }
}

impl From<Fraction> for f64 {
    fn from(f: Fraction) -> f64 {
        f.0
    }
}
