#!/usr/bin/env bash
# On a CPU with AMX: the engine's AMX path against its AVX-512 path
# (SERVEBENCH_KERNELS=avx512), same binary, same files, same thread count,
# rounds alternating; prefill (pp512) and decode batches of 8 and 16
# sequences (tokens/s over all of them). Medians and ratios are printed.
#   bash scripts/bench-amx.sh [THREADS] [ROUNDS] [FILE ...]
# Default files: those `scripts/bench-types.sh` makes (run it once first)
# whose types have an AMX path: SmolLM2 in Q4_K_M, Q6_K and F16 (BF16 tiles),
# and the Llama-2-7B-shaped Q4_K_M.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
shift $(($# < 2 ? $# : 2))
grep -qw amx_int8 /proc/cpuinfo || { echo "this CPU has no AMX-INT8" >&2; exit 1; }
cargo build --release --quiet -p servebench
SB=./target/release/servebench
DIR=$(dirname "$($SB fetch-model)")/types
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=("$DIR/SmolLM2-135M-Instruct.Q4_K_M.gguf" "$DIR/SmolLM2-135M-Instruct.Q6_K.gguf" "$DIR/SmolLM2-135M-Instruct.F16.gguf" "$DIR/llama-2-7b-shape.Q4_K_M.gguf")
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "missing $f: run scripts/bench-types.sh once to make it" >&2; exit 1; }
done

out=$(mktemp -d)
for ((r = 1; r <= ROUNDS; r++)); do
  for f in "${files[@]}"; do
    n=$(basename "$f" .gguf)
    for path in amx avx512; do
      kernels=$([ $path = avx512 ] && echo avx512 || true)
      SERVEBENCH_KERNELS=$kernels $SB engine-bench --model "$f" --threads "$THREADS" -p 512 -n 16 -b 8 -r 1 --json >"$out/$n.$path.b8.$r"
      SERVEBENCH_KERNELS=$kernels $SB engine-bench --model "$f" --threads "$THREADS" -p 1 -n 16 -b 16 -r 1 --json >"$out/$n.$path.b16.$r"
    done
  done
done
echo "$(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD), $THREADS threads, $ROUNDS alternating rounds, medians, tokens/s AMX / AVX-512"
python3 - "$out" "${files[@]}" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
print(f"{'file':<36}{'pp512':>22}{'ratio':>7}{'decode batch 8':>22}{'ratio':>7}{'decode batch 16':>22}{'ratio':>7}")
for path in sys.argv[2:]:
    n = os.path.basename(path)[:-5]
    row = f"{n:<36}"
    for test, key in [("b8", "pp_tok_s"), ("b8", "tg_tok_s"), ("b16", "tg_tok_s")]:
        med = {}
        for p in ("amx", "avx512"):
            runs = [f for f in os.listdir(out) if f.startswith(f"{n}.{p}.{test}.")]
            med[p] = statistics.median(json.load(open(f"{out}/{f}"))[key] for f in runs)
        row += f"{med['amx']:>13.1f} /{med['avx512']:>7.1f}{med['amx'] / med['avx512']:>7.2f}"
    print(row)
PY
rm -rf "$out"
