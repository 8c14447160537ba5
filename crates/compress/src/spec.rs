//! What a user asks for: the compressor and the number format of the values it sends.

use serde::{Deserialize, Serialize};

/// A compressor Q, as named in docs/algorithms.md and in the `[compression]` config table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompressorSpec {
    /// Q(v) = v.
    Identity {
        /// Number format of the values on the wire.
        #[serde(default)]
        values: ValueFormat,
    },
    /// Keep the k = max(1, ceil(ratio d)) entries of largest magnitude (ties to the lower index).
    TopK {
        /// Fraction of coordinates kept, in (0, 1].
        ratio: f64,
        /// Number format of the kept values.
        #[serde(default)]
        values: ValueFormat,
    },
    /// Keep k uniformly chosen entries, unscaled; the receiver regenerates the indices from a seed.
    RandK {
        /// Fraction of coordinates kept, in (0, 1].
        ratio: f64,
        /// Number format of the kept values.
        #[serde(default)]
        values: ValueFormat,
    },
    /// The scaled, contractive QSGD with `levels` quantisation levels.
    Qsgd {
        /// Number of levels s >= 1.
        levels: u32,
    },
    /// (||v||_1 / d) sign(v), one bit a coordinate.
    Sign,
}

impl Default for CompressorSpec {
    fn default() -> Self {
        CompressorSpec::Identity { values: ValueFormat::F32 }
    }
}

/// How the values of a dense or sparse message are written on the wire. Narrow formats round the
/// values at the sender before anything uses them, so sender and receivers see the same numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// IEEE binary32, exact.
    #[default]
    F32,
    /// IEEE binary16 (round to nearest even; overflow to infinity is an error at the sender).
    F16,
    /// bfloat16: binary32's range with an 8-bit significand.
    Bf16,
}

impl ValueFormat {
    /// Bytes per value on the wire.
    pub fn width(self) -> usize {
        match self {
            ValueFormat::F32 => 4,
            ValueFormat::F16 | ValueFormat::Bf16 => 2,
        }
    }

    /// Rounds `v` to this format (and back to f32).
    #[inline]
    pub fn round(self, v: f32) -> f32 {
        match self {
            ValueFormat::F32 => v,
            ValueFormat::F16 => half::f16::from_f32(v).to_f32(),
            ValueFormat::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }
}

/// The number of entries `top_k`/`rand_k` keep of a `dim`-vector: max(1, ceil(ratio * dim)).
/// The product is snapped to the nearest integer when it is within 1e-9 of it, so that a decimal
/// ratio such as 0.07 of 100 keeps 7 entries, not the 8 that `ceil(7.000000000000001)` gives.
pub fn k_of(ratio: f64, dim: usize) -> usize {
    let x = ratio * dim as f64;
    let k = if (x - x.round()).abs() <= 1e-9 * x.max(1.0) { x.round() } else { x.ceil() };
    (k as usize).clamp(1, dim.max(1))
}

impl CompressorSpec {
    /// Checks the parameters; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            CompressorSpec::TopK { ratio, .. } | CompressorSpec::RandK { ratio, .. } => {
                if !(ratio.is_finite() && *ratio > 0.0 && *ratio <= 1.0) {
                    return Err(format!("ratio must be in (0, 1], got {ratio}"));
                }
            }
            CompressorSpec::Qsgd { levels } => {
                if *levels == 0 || *levels > 32767 {
                    return Err(format!("qsgd levels must be in 1..=32767, got {levels}"));
                }
            }
            CompressorSpec::Identity { .. } | CompressorSpec::Sign => {}
        }
        Ok(())
    }

    /// True for the identity compressor (exact messages).
    pub fn is_identity(&self) -> bool {
        matches!(self, CompressorSpec::Identity { .. })
    }

    /// A short human-readable name, e.g. `top_k(0.01)`.
    pub fn label(&self) -> String {
        match self {
            CompressorSpec::Identity { .. } => "identity".into(),
            CompressorSpec::TopK { ratio, .. } => format!("top_k({ratio})"),
            CompressorSpec::RandK { ratio, .. } => format!("rand_k({ratio})"),
            CompressorSpec::Qsgd { levels } => format!("qsgd({levels})"),
            CompressorSpec::Sign => "sign".into(),
        }
    }
}
