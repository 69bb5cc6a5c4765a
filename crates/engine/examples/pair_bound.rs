//! How fast this core can run the AVX2 step that `dot_rows` and llama.cpp
//! (`vec_dot`, tinyBLAS) take per pair of 32-value blocks (one Q8_0 or
//! Q5_0 weight block, one Q8_0 activation block): `vpsignb`, `vpmaddubsw`,
//! `vpmaddwd`, `vcvtdq2ps`, `vmulps` (d_w · d_x) and `vfmadd231ps` into 8
//! f32 lanes. The step runs alone in a loop shaped as a 1x8 tile runs it:
//! one weight block in registers, 8 activation blocks and their scales
//! loaded from L1, 8 independent accumulators. Prints cycles per pair (the
//! clock taken from a chain of dependent adds) and the GMAC/s one core
//! would reach at that rate, to set beside `matmul_bench`'s figure for the
//! whole kernel. The second loop replaces the sign step by subtracting a
//! precomputed offset (Q5_0 multiplied as unsigned `q + 16`); the third
//! is `dot_rows`' step without VNNI on widened panels: both sides as 16-bit
//! integers, two `vpmaddwd`s and an add; the fourth takes each pair's
//! `d_w · d_x` by a shuffle from one multiply per four rows, as
//! `dot_rows` does (`StripScales::quads`).
//!   cargo run --release -p servebench-engine --example pair_bound
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    /// One pair of blocks into accumulator `$acc`: activation row `$t`'s
    /// block (rows 612 bytes apart, as SmolLM2's 576-column Q8_0 rows),
    /// with the sign step before the `vpmaddubsw` or row `$t`'s offset
    /// subtracted after the `vpmaddwd`.
    macro_rules! pair {
        ($acc:literal, $t:literal, sign) => {
            concat!(
                "vmovdqu ymm8, [{x} + 2 + 612 * ",
                $t,
                "]\n",
                "vpsignb ymm8, ymm8, ymm13\n",
                "vpmaddubsw ymm8, ymm14, ymm8\n",
                "vpmaddwd ymm8, ymm8, ymm12\n",
                fold!($acc, $t),
            )
        };
        ($acc:literal, $t:literal, madd16) => {
            concat!(madd16!($t), fold!($acc, $t))
        };
        ($acc:tt, $t:tt, shuffled) => {
            concat!(madd16!($t), shuffled!($acc, $t))
        };
        ($acc:literal, $t:literal, offset) => {
            concat!(
                "vmovdqu ymm8, [{x} + 2 + 612 * ",
                $t,
                "]\n",
                "vpmaddubsw ymm8, ymm14, ymm8\n",
                "vpmaddwd ymm8, ymm8, ymm12\n",
                "vpsubd ymm8, ymm8, [{c} + 32 * ",
                $t,
                "]\n",
                fold!($acc, $t),
            )
        };
    }

    /// The 16-bit step's integers of row `$t`'s pair: two `vpmaddwd`s
    /// and an add.
    macro_rules! madd16 {
        ($t:tt) => {
            concat!(
                "vpmaddwd ymm8, ymm13, [{x} + 64 * ",
                $t,
                "]\n",
                "vpmaddwd ymm10, ymm14, [{x} + 32 + 64 * ",
                $t,
                "]\n",
                "vpaddd ymm8, ymm8, ymm10\n",
            )
        };
    }

    /// The float steps of a pair: convert, `d_w · d_x`, FMA.
    macro_rules! fold {
        ($acc:literal, $t:literal) => {
            concat!(
                "vcvtdq2ps ymm8, ymm8\n",
                "vmulps ymm9, ymm15, [{d} + 32 * ",
                $t,
                "]\n",
                "vfmadd231ps ymm",
                $acc,
                ", ymm9, ymm8\n",
            )
        };
    }

    /// The float steps of a pair with `d_w · d_x` taken by an in-lane
    /// shuffle from a product of four rows' scales (one `vmulps` before
    /// rows 0 and 4, the assembler's `.if`): convert, `vpermilps`, FMA.
    macro_rules! shuffled {
        ($acc:tt, $t:tt) => {
            concat!(
                ".if (",
                $t,
                " & 3) == 0\n",
                "vmulps ymm11, ymm15, [{d} + 8 * ",
                $t,
                "]\n",
                ".endif\n",
                "vcvtdq2ps ymm8, ymm8\n",
                "vpermilps ymm9, ymm11, 0x55 * (",
                $t,
                " & 3)\n",
                "vfmadd231ps ymm",
                $acc,
                ", ymm9, ymm8\n",
            )
        };
    }

    /// The loop's constants (ones for `vpmaddwd`, a weight block and its
    /// absolute values, a scale of 1.0) and zeroed
    /// accumulators, so that no float is ever a denormal or NaN; then 8
    /// pairs.
    macro_rules! eight {
        ($step:ident) => {
            concat!(
                "vpcmpeqw ymm12, ymm12, ymm12\n",
                "vmovdqu ymm13, [{x}]\n",
                "vpabsb ymm14, ymm13\n",
                "vbroadcastss ymm15, [{d}]\n",
                // Names the offsets for the loops that do not read them
                // (an assembler comment: nothing runs).
                "# {c}\n",
                "vxorps ymm0, ymm0, ymm0\n",
                "vxorps ymm1, ymm1, ymm1\n",
                "vxorps ymm2, ymm2, ymm2\n",
                "vxorps ymm3, ymm3, ymm3\n",
                "vxorps ymm4, ymm4, ymm4\n",
                "vxorps ymm5, ymm5, ymm5\n",
                "vxorps ymm6, ymm6, ymm6\n",
                "vxorps ymm7, ymm7, ymm7\n",
                pair!("0", "0", $step),
                pair!("1", "1", $step),
                pair!("2", "2", $step),
                pair!("3", "3", $step),
                pair!("4", "4", $step),
                pair!("5", "5", $step),
                pair!("6", "6", $step),
                pair!("7", "7", $step),
            )
        };
    }

    /// Seconds per pair of the loop with this step.
    macro_rules! timed {
        ($step:ident) => {
            // SAFETY: AVX2 and FMA are present (checked by `main`); every
            // load is inside `x`, `d` or `c` (the highest, x + 2 + 612 * 7
            // + 32, is below 612 * 8 + 64; the 16-bit step's reach x + 64 *
            // 8); the ymm registers written are declared clobbered.
            seconds_per_pair(|x, d, c| unsafe {
                asm!(
                    eight!($step),
                    x = in(reg) x.as_ptr(),
                    d = in(reg) d.as_ptr(),
                    c = in(reg) c.as_ptr(),
                    out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                    out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                    out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _, out("ymm12") _, out("ymm13") _,
                    out("ymm14") _, out("ymm15") _,
                    options(nostack, readonly),
                )
            })
        };
    }

    /// Cycles per second, from 100 dependent one-cycle adds an iteration.
    fn clock_hz() -> f64 {
        const ITERS: u64 = 20_000_000;
        let start = Instant::now();
        // SAFETY: plain integer instructions on registers the asm owns.
        unsafe {
            asm!(
                "2:",
                ".rept 100",
                "add {a}, 1",
                ".endr",
                "dec {n}",
                "jnz 2b",
                a = inout(reg) 0u64 => _,
                n = inout(reg) ITERS => _,
                options(nostack, nomem),
            );
        }
        (ITERS * 100) as f64 / start.elapsed().as_secs_f64()
    }

    /// Seconds per pair of `body` (8 pairs an iteration).
    fn seconds_per_pair(body: impl Fn(&[u8], &[f32], &[i32])) -> f64 {
        let x = vec![3u8; 612 * 8 + 64];
        let d = vec![1.0f32; 64];
        let c = vec![0i32; 64];
        const ITERS: usize = 20_000_000;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..ITERS {
                body(&x, &d, &c);
            }
            best = best.min(start.elapsed().as_secs_f64() / (ITERS * 8) as f64);
        }
        best
    }

    pub fn main() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("pair_bound: needs AVX2 and FMA");
            return;
        }
        let hz = clock_hz();
        println!("clock: {:.2} GHz (dependent adds)", hz / 1e9);
        let sign = timed!(sign);
        let offset = timed!(offset);
        let madd16 = timed!(madd16);
        let shuffled = timed!(shuffled);
        for (name, s) in [
            ("sign, maddubs, madd, cvt, mul, fma", sign),
            ("maddubs, madd, sub, cvt, mul, fma", offset),
            ("madd, madd, add, cvt, mul, fma (16-bit)", madd16),
            ("madd, madd, add, cvt, shuffle, fma (16-bit)", shuffled),
        ] {
            let cycles = s * hz;
            println!(
                "{name}: {cycles:.2} cycles/pair, {:.1} GMAC/s per core",
                32.0 * hz / cycles / 1e9
            );
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::main();
    #[cfg(not(target_arch = "x86_64"))]
    eprintln!("pair_bound: x86-64 only");
}
