//! Intel AMX (Sapphire Rapids and later): whether this process may use the
//! int8 and BF16 tiles, and their configuration. Stable Rust has no AMX
//! intrinsics, so the kernels that use tiles write the instructions as
//! inline assembly (`ldtilecfg`, `tileloadd`, `tdpbssd`, `tdpbf16ps`,
//! `tilestored`, `tilerelease`).

use std::sync::OnceLock;

/// Whether AMX-TILE and AMX-INT8 are there, the OS saves tile state, and
/// Linux granted this process the tile data (`arch_prctl(
/// ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: without it the first tile
/// instruction faults). Asked once; `SERVEBENCH_KERNELS=avx512` (the
/// AVX-512 kernels alone, for comparisons), `rows` or `portable` answer
/// no.
pub fn available() -> bool {
    units().int8
}

/// [`available`], and AMX-BF16 (`tdpbf16ps`) too.
pub fn bf16_available() -> bool {
    units().bf16
}

/// Which tile multipliers this process may use.
#[derive(Clone, Copy, Default)]
struct Units {
    int8: bool,
    /// Only with `int8` (the same tile permission).
    bf16: bool,
}

fn units() -> Units {
    static OK: OnceLock<Units> = OnceLock::new();
    *OK.get_or_init(|| {
        let off = matches!(
            std::env::var("SERVEBENCH_KERNELS").as_deref(),
            Ok("avx512" | "rows" | "portable")
        );
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if !off {
            return x86::detect();
        }
        let _ = off;
        Units::default()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86 {
    use super::Units;
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

    const ARCH_REQ_XCOMP_PERM: libc::c_int = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;

    pub fn detect() -> Units {
        let (leaf1, leaf7) = (__cpuid(1), __cpuid_count(7, 0));
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
        let bf16 = leaf7.edx & (1 << 22) != 0;
        if !(osxsave && tile && int8) {
            return Units::default();
        }
        // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS manages tiles.
        // SAFETY: OSXSAVE is set, so `xgetbv` runs.
        let xcr0 = unsafe { xcr0() };
        if xcr0 & (0b11 << 17) != 0b11 << 17 {
            return Units::default();
        }
        // SAFETY: a plain system call with integer arguments.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        };
        Units {
            int8: granted,
            bf16: granted && bf16,
        }
    }

    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        _xgetbv(0)
    }
}

/// A tile configuration (palette 1): each of the 8 tiles' rows and bytes
/// per row.
#[repr(C, align(64))]
pub struct TileConfig([u8; 64]);

impl TileConfig {
    /// `shapes[i]` = (rows, bytes per row) of tile i; (0, 0) leaves it off.
    pub const fn new(shapes: [(u8, u16); 8]) -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut i = 0;
        while i < 8 {
            let (rows, bytes) = shapes[i];
            c[16 + 2 * i] = bytes as u8;
            c[17 + 2 * i] = (bytes >> 8) as u8;
            c[48 + i] = rows;
            i += 1;
        }
        Self(c)
    }

    /// Makes this the calling thread's configuration (tiles zeroed).
    ///
    /// # Safety
    /// [`available`] answered yes.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub unsafe fn load(&self) {
        std::arch::asm!("ldtilecfg [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly));
    }
}

/// Returns the calling thread's tiles to their initial state, so the OS
/// need not save them on every switch.
///
/// # Safety
/// [`available`] answered yes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn release() {
    std::arch::asm!("tilerelease", options(nostack, nomem));
}

/// Tile `$t` from `$p` (rows 64 bytes apart).
macro_rules! tile_load {
    ($t:literal, $p:expr) => {
        ::std::arch::asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $p,
            s = in(reg) 64usize, options(nostack, readonly))
    };
}
/// Tile `$t` to `$p` (rows 64 bytes apart).
macro_rules! tile_store {
    ($t:literal, $p:expr) => {
        ::std::arch::asm!(concat!("tilestored [{p} + {s}*1], tmm", $t), p = in(reg) $p,
            s = in(reg) 64usize, options(nostack))
    };
}
macro_rules! tile_zero {
    ($t:literal) => {
        ::std::arch::asm!(concat!("tilezero tmm", $t), options(nostack, nomem))
    };
}
/// `tmm$c += tmm$a · tmm$b` by `$op` (`tdpbssd`: both signed; `tdpbsud`:
/// the second unsigned; `tdpbf16ps`: BF16 pairs into f32).
macro_rules! tile_dot {
    ($op:literal, $c:literal, $a:literal, $b:literal) => {
        ::std::arch::asm!(
            concat!($op, " tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem)
        )
    };
}
pub(crate) use {tile_dot, tile_load, tile_store, tile_zero};
