#!/usr/bin/env bash
# Does batching pay? servebench's server on the default model, driven by
# `servebench bench` at 1 and at 8 concurrent streams, alternating
# (A/B/A/B...), 64 new tokens with ignore_eos; prints each round and the
# median ratio of aggregate output tokens/s (8 streams / 1 stream).
#   bash scripts/bench-batching.sh [THREADS] [ROUNDS]     (defaults 2, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
PORT=${PORT:-8193}
source scripts/serve-local.sh
for r in $(seq "$ROUNDS"); do
  for c in 1 8; do
    "$BIN" bench --url "http://127.0.0.1:$PORT" --api tgi --concurrency "$c" \
      --requests $((c * 6)) --warmup "$c" --pause 1s --max-new-tokens 64 --ignore-eos \
      --out "$DIR/r$r-c$c" >/dev/null 2>&1
  done
done
python3 - "$DIR" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def tput(r, c):
    return json.load(open(f"{d}/r{r}-c{c}/summary.json"))["levels"][0]["output_throughput_tok_s"]
ratios = []
for r in range(1, rounds + 1):
    one, eight = tput(r, 1), tput(r, 8)
    ratios.append(eight / one)
    print(f"round {r}: 1 stream {one:.1f} tok/s, 8 streams {eight:.1f} tok/s, ratio {eight / one:.2f}")
print(f"median ratio (8 streams / 1 stream): {statistics.median(ratios):.2f}")
PY
