//! The CPU compute boundary: everything the model needs from hardware
//! (matmul, attention, norm, rope, activations). A GPU backend is another
//! module with the same operations.

pub mod amx;
pub mod attention;
pub mod blocks;
pub mod dot;
pub mod dot_rows;
pub mod ggml_numerics;
#[cfg(target_arch = "x86_64")]
pub mod half_amx;
pub mod half_rows;
pub mod half_vec;
pub mod huge_pages;
pub mod interleaved;
pub mod kquants;
pub mod legacy16;
pub mod matmul;
pub mod ops;
mod requantize;
pub mod team;

pub use matmul::{Matrix, Role};

/// `$body` with `$N` a `const usize` equal to the runtime value `$n`, for
/// each listed value: the step from a strip's or tile's runtime size to the
/// kernel instantiated for that size. A value not listed is a caller's bug
/// (its bound and its list disagree) and panics, where running another
/// size's instance would leave outputs unwritten.
macro_rules! with_const {
    ($n:expr, $N:ident in [$($k:literal),+] => $body:expr) => {
        match $n {
            $($k => {
                const $N: usize = $k;
                $body
            })+
            other => unreachable!(
                "with_const!: no instance for {} = {other}",
                stringify!($n)
            ),
        }
    };
}
pub(crate) use with_const;

/// Weight bytes a prefill kernel keeps in L2 while every tile of
/// activation rows, in L1, passes over them: a quarter of Zen 3's 512 KiB
/// L2 (AVX2 `half_rows` blocks and `dot_rows` panels).
#[cfg(target_arch = "x86_64")]
pub(crate) const L2_WEIGHT_BLOCK: usize = 128 << 10;
