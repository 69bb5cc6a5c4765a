#!/usr/bin/env bash
# The engine next to llama.cpp's llama-bench on every common GGUF type, same
# files, same machine, same thread count: SmolLM2 requantized by llama.cpp's
# own llama-quantize into each type, and a Llama-2-7B-shaped Q4_K_M (random
# weights from `make-model`, quantized the same way). Rounds alternate
# servebench and llama-bench; medians and ratios are printed, with the 7B's
# decode against this machine's memory-bandwidth bound (read bandwidth from
# `servebench probe --threads THREADS` run right before each decode run,
# divided by the weight bytes read per token; the VM's share of the host's
# bandwidth moves, so each round's decode is held to its own probe and the
# median of those ratios is printed).
#   bash scripts/bench-types.sh [THREADS] [ROUNDS]     (default 2 threads, 3 rounds)
#   TYPES="Q4_K_M Q8_0" SKIP_7B=1 bash scripts/bench-types.sh
# Files are made once under ~/.cache/servebench/models/types (the 7B one needs
# ~18 GB of disk while it is made, 4 GB after). Needs the llama.cpp peer
# (../shared/peers/llama-server.sh, built once, about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
TYPES=${TYPES:-"Q4_1 Q4_K_M Q5_K_M Q6_K Q8_0 Q4_0 F16"}
PEERS=${SERVEBENCH_PEERS_SCRIPT:-../shared/peers/llama-server.sh}
BIN=$(bash "$PEERS" --build-only)
GGUF_PY=$BIN/../../gguf-py
# gguf-py (the weight bytes per token, read at the end) needs numpy: ask
# before the runs rather than after them.
python3 -c "import numpy" 2>/dev/null || { echo "needs numpy for llama.cpp's gguf-py: python3 -m pip install numpy" >&2; exit 1; }
cargo build --release --quiet -p servebench
SB=./target/release/servebench
SHIPPED=$($SB fetch-model)
DIR=$(dirname "$SHIPPED")/types
mkdir -p "$DIR"
BASE=$(basename "$SHIPPED" .Q4_1.gguf)

files=()
for t in $TYPES; do
  if [ "$t" = Q4_1 ]; then files+=("$SHIPPED"); continue; fi
  f=$DIR/$BASE.$t.gguf
  [ -f "$f" ] || "$BIN/llama-quantize" --allow-requantize "$SHIPPED" "$f.partial" "$t" >/dev/null 2>&1
  [ -f "$f" ] || mv "$f.partial" "$f"
  files+=("$f")
done
if [ -z "${SKIP_7B:-}" ]; then
  f=$DIR/llama-2-7b-shape.Q4_K_M.gguf
  if [ ! -f "$f" ]; then
    $SB make-model --arch-preset llama-2-7b --quant f16 --vocab spm --out "$DIR/llama-2-7b-shape.F16.gguf"
    "$BIN/llama-quantize" "$DIR/llama-2-7b-shape.F16.gguf" "$f.partial" Q4_K_M >/dev/null 2>&1
    mv "$f.partial" "$f"
    rm -f "$DIR/llama-2-7b-shape.F16.gguf"
  fi
  files+=("$f")
fi

out=$(mktemp -d)
for ((r = 1; r <= ROUNDS; r++)); do
  for f in "${files[@]}"; do
    n=$(basename "$f" .gguf)
    $SB probe --threads "$THREADS" 2>/dev/null \
      | sed -n 's/^memory_bandwidth_gb_s = { value = \([0-9.]*\).*/\1/p' >"$out/$n.probe.$r"
    $SB engine-bench --model "$f" --threads "$THREADS" -p 512 -n 64 -r 1 --json >"$out/$n.ours.$r"
    "$BIN/llama-bench" -m "$f" -t "$THREADS" -p 512 -n 64 -r 1 -o json >"$out/$n.theirs.$r" 2>/dev/null
  done
done
echo "$(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD), $THREADS threads, $ROUNDS alternating rounds, medians"
python3 - "$out" "$GGUF_PY" "${files[@]}" <<'PY'
import json, os, statistics, sys
out, gguf_py = sys.argv[1], sys.argv[2]
sys.path.insert(0, gguf_py)
from gguf import GGUFReader

def bytes_per_token(path):
    """Weight bytes one decode step reads: every matrix, but of the embedding
    only one row unless it is also the output projection (tied)."""
    ts = GGUFReader(path).tensors
    untied = any(t.name == "output.weight" for t in ts)
    return sum(t.n_bytes for t in ts if not (untied and t.name == "token_embd.weight"))

print("tg/bound = decode tokens/s over (read bandwidth probed just before / weight bytes read per token), median over rounds")
print(f"{'file':<36}{'pp512 ours/theirs':>22}{'ratio':>7}{'tg64 ours/theirs':>20}{'ratio':>7}{'tg/bound':>10}{'GB/s probed':>16}")
for path in sys.argv[3:]:
    n = os.path.basename(path)[:-5]
    rounds = sorted({f.rsplit(".", 1)[1] for f in os.listdir(out) if f.startswith(n + ".ours.")})
    ours = [json.load(open(f"{out}/{n}.ours.{r}")) for r in rounds]
    theirs = [json.load(open(f"{out}/{n}.theirs.{r}")) for r in rounds]
    pp = statistics.median(o["pp_tok_s"] for o in ours)
    tg = statistics.median(o["tg_tok_s"] for o in ours)
    tpp = statistics.median(x["avg_ts"] for t in theirs for x in t if x["n_prompt"])
    ttg = statistics.median(x["avg_ts"] for t in theirs for x in t if x["n_gen"])
    probes = [float(open(f"{out}/{n}.probe.{r}").read()) for r in rounds]
    per_token = bytes_per_token(path)
    of_bound = statistics.median(o["tg_tok_s"] * per_token / (b * 1e9) for o, b in zip(ours, probes))
    print(f"{n:<36}{pp:>11.1f} /{tpp:>8.1f}{pp / tpp:>7.2f}{tg:>11.1f} /{ttg:>6.1f}{tg / ttg:>7.2f}"
          f"{of_bound:>9.0%}{min(probes):>9.1f}-{max(probes):.1f}")
PY
rm -rf "$out"
