//! Inference in a narrower floating-point format, simulated in f32: the
//! book's `half_float_network.py` (chapter 8), which stores DeepConvNet's
//! weights as float16 and finds its accuracy unchanged.
//!
//! A value is rounded to the nearest number of the format (ties to even),
//! as a conversion to it and back would: the weights once, the input and
//! every layer's output as they are produced. The products inside a layer
//! still sum in f32, as half-precision hardware sums in a wider
//! accumulator.

use std::fmt;
use std::str::FromStr;

/// A floating-point format to run inference in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// IEEE single precision: 8 exponent bits, 24 significant bits.
    #[default]
    F32,
    /// IEEE half precision (float16): 5 exponent bits, 11 significant bits;
    /// largest 65504, smallest normal 2^-14, subnormals down to 2^-24.
    F16,
    /// bfloat16: f32's 8 exponent bits, 8 significant bits.
    Bf16,
}

impl Precision {
    /// `value` rounded to the nearest number of this format, ties to even;
    /// beyond the format's range, infinity of its sign. NaN stays NaN.
    pub fn round(self, value: f32) -> f32 {
        match self {
            Precision::F32 => value,
            Precision::F16 => round_f16(value),
            Precision::Bf16 => round_bf16(value),
        }
    }

    /// [`Precision::round`] over every value of `values`.
    pub fn round_all(self, values: &mut [f32]) {
        if self != Precision::F32 {
            values.iter_mut().for_each(|v| *v = self.round(*v));
        }
    }
}

/// float16: the spacing of numbers of `value`'s binade is 2^(e - 10) for a
/// normal value of exponent `e >= -14`, and 2^-24 below (subnormals), so
/// rounding is a division by the spacing (exact: a power of two), a round
/// to the nearest integer, ties to even, and the multiplication back.
fn round_f16(value: f32) -> f32 {
    if !value.is_finite() {
        return value;
    }
    let magnitude = value.abs();
    // Halfway between 65504 (the largest float16) and 65536 (the next step).
    if magnitude >= 65520.0 {
        return f32::INFINITY.copysign(value);
    }
    let exponent = ((magnitude.to_bits() >> 23) & 0xff) as i32 - 127;
    let spacing = 2f32.powi(exponent.max(-14) - 10);
    (value / spacing).round_ties_even() * spacing
}

/// bfloat16: f32's top 16 bits, rounded to nearest, ties to even, by adding
/// half a step (less one, plus the kept last bit) before cutting.
fn round_bf16(value: f32) -> f32 {
    if value.is_nan() {
        return value;
    }
    let bits = value.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision '{other}'; use f32, f16 or bf16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float16_rounds_to_eleven_significant_bits_with_its_range() {
        let f16 = |v: f32| Precision::F16.round(v);
        assert_eq!(f16(1.0), 1.0);
        // 1 + 2^-10 is the next float16 after 1; halfway ties to even (1).
        assert_eq!(f16(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(f16(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2.0 * 2f32.powi(-10));
        assert_eq!(f16(0.1), 0.099_975_586); // 0x2e66
        assert_eq!(f16(-5.3), -1357.0 / 256.0); // steps of 2^-8 in [4, 8)
        assert_eq!(f16(65504.0), 65504.0);
        assert_eq!(f16(65519.0), 65504.0);
        assert_eq!(f16(65520.0), f32::INFINITY);
        assert_eq!(f16(-1e6), f32::NEG_INFINITY);
        // Subnormals: steps of 2^-24; half of the smallest ties to 0.
        assert_eq!(f16(2f32.powi(-24)), 2f32.powi(-24));
        assert_eq!(f16(2f32.powi(-25)), 0.0);
        assert_eq!(f16(3.0 * 2f32.powi(-25)), 2.0 * 2f32.powi(-24));
        assert_eq!(f16(1e-10), 0.0);
        assert!(f16(f32::NAN).is_nan());
    }

    #[test]
    fn bfloat16_keeps_the_exponent_and_eight_significant_bits() {
        let bf16 = |v: f32| Precision::Bf16.round(v);
        assert_eq!(bf16(1.0), 1.0);
        assert_eq!(bf16(1.0 + 2f32.powi(-8)), 1.0); // a tie, to even
        assert_eq!(bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2.0 * 2f32.powi(-7));
        assert_eq!(bf16(0.1), 0.100_097_656); // 0x3dcd
        assert_eq!(bf16(1e30).to_bits() & 0xffff, 0, "the low 16 bits dropped");
        assert!((bf16(1e30) / 1e30 - 1.0).abs() < 2f32.powi(-8));
        assert!(bf16(1e-30) > 0.0, "bfloat16 has f32's range");
        assert_eq!(bf16(f32::MAX), f32::INFINITY, "rounds up past the largest");
        assert!(bf16(f32::NAN).is_nan());
        assert_eq!(Precision::F32.round(0.1), 0.1);
    }

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for p in [Precision::F32, Precision::F16, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("f8".parse::<Precision>().unwrap_err().contains("f16"));
    }
}
