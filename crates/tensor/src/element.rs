use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point scalar the tensors and layers work in: `f32` or `f64`.
///
/// Its GEMM kernel (`sgemm` or `dgemm`) comes through the sealed
/// `GemmKernel` supertrait (in `gemm.rs`), so generic code reaches
/// it without a runtime type check.
pub trait Element:
    Copy
    + Default
    + Debug
    + Display
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + Sum
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + rand_distr::uniform::SampleUniform
    + crate::gemm::GemmKernel
    + 'static
{
    /// `0.0`.
    const ZERO: Self;
    /// `1.0`.
    const ONE: Self;
    /// The smallest positive normal number (1.2e-38 in f32): below it,
    /// floats are subnormal.
    const MIN_POSITIVE: Self;
    /// `"f32"` or `"f64"`, for headers, reports and checkpoints.
    const NAME: &'static str;

    /// `value` rounded to the nearest `Self` (exact for `f64`).
    fn from_f64(value: f64) -> Self;
    /// A byte as a float, exactly.
    fn from_u8(value: u8) -> Self;
    /// `self` as an `f64`, exactly.
    fn to_f64(self) -> f64;
    /// A pixel byte as a value in `[0, 1]`: `byte / 255` correctly rounded,
    /// the value of the book's `x.astype(float32) / 255.0`. The one place
    /// where pixels become floats. Written as arithmetic (not a lookup
    /// table) so that a row converts with vector instructions; in f32
    /// without a division (two multiplications and an addition, correctly
    /// rounded for every byte).
    fn from_pixel(byte: u8) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// The natural logarithm (`-inf` at 0, NaN below).
    fn ln(self) -> Self;
    /// The square root (NaN below 0).
    fn sqrt(self) -> Self;
    /// The absolute value.
    fn abs(self) -> Self;
    /// The larger of `self` and `other`; a NaN loses to a number, as in `f32::max`.
    fn max(self, other: Self) -> Self;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// `self * a + b` with one rounding (compiles to an FMA instruction
    /// where the calling code is built with that feature).
    fn mul_add(self, a: Self, b: Self) -> Self;
}

/// `1/255` in two parts for [`pixel_f32`]: `PIXEL_HI` its first 16
/// significant bits (so that `byte * PIXEL_HI` is exact: 8 + 16 bits),
/// `PIXEL_LO` the rest, rounded to f32.
const PIXEL_HI: f32 = f32::from_bits((1.0f32 / 255.0).to_bits() & !0xff);
const PIXEL_LO: f32 = (1.0f64 / 255.0 - PIXEL_HI as f64) as f32;

/// `byte / 255` in f32, correctly rounded, by two multiplications and an
/// addition: the exact `byte * PIXEL_HI` plus the small, rounded `byte *
/// PIXEL_LO`, rounded in the sum, is the quotient's correct rounding for
/// every byte (a test checks all 256): the bits of `byte / 255` repeat the
/// byte's, so the quotient is never near enough to a rounding boundary for
/// these small errors to cross it. Without AVX (the crates' baseline
/// x86-64 target) a division converts 4 values per `divps`, the larger part
/// of a training batch's gather and of converting an evaluation's images;
/// this is about 1.5 times faster.
#[inline(always)]
fn pixel_f32(byte: u8) -> f32 {
    let value = f32::from(byte);
    value * PIXEL_HI + value * PIXEL_LO
}

/// `byte / 255` in f64: one correctly rounded division.
#[inline(always)]
fn pixel_f64(byte: u8) -> f64 {
    f64::from(byte) / 255.0
}

macro_rules! impl_element {
    ($t:ty, $name:literal, $pixel:ident) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MIN_POSITIVE: Self = <$t>::MIN_POSITIVE;
            const NAME: &'static str = $name;

            #[inline]
            fn from_f64(value: f64) -> Self {
                value as $t
            }
            #[inline(always)]
            fn from_u8(value: u8) -> Self {
                value as $t
            }
            #[inline(always)]
            fn from_pixel(byte: u8) -> Self {
                $pixel(byte)
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
        }
    };
}

impl_element!(f32, "f32", pixel_f32);
impl_element!(f64, "f64", pixel_f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pixel_is_its_byte_over_255_correctly_rounded() {
        for byte in 0..=255u8 {
            assert_eq!(f32::from_pixel(byte), f32::from(byte) / 255.0, "byte {byte}");
            assert_eq!(f64::from_pixel(byte), f64::from(byte) / 255.0, "byte {byte}");
        }
        assert_eq!((f32::from_pixel(0), f32::from_pixel(255)), (0.0, 1.0));
    }
}
