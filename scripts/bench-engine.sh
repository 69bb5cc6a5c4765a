#!/usr/bin/env bash
# Engine speed next to llama.cpp's llama-bench, same machine, same run:
# single-stream prefill (pp128) and decode (tg128) tokens/s at N threads.
#   bash scripts/bench-engine.sh [THREADS]          (default 2)
# Needs the llama.cpp peer (built once by ../shared/peers/llama-server.sh into
# ~/.cache/servebench-peers, about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
PEERS=${SERVEBENCH_PEERS_SCRIPT:-../shared/peers/llama-server.sh}
cargo build --release --quiet -p servebench
MODEL=$(./target/release/servebench fetch-model)
ours=$(./target/release/servebench engine-bench --model "$MODEL" --threads "$THREADS" -p 128 -n 128 -r 5 --json)
theirs=$(LLAMA_TOOL=llama-bench bash "$PEERS" -m "$MODEL" -t "$THREADS" -p 128 -n 128 -r 5 -o json)
python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours = json.loads(sys.argv[1]); theirs = json.loads(sys.argv[2])
ref = {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in theirs}
print(f"threads {ours['threads']}, kernels {ours['kernels']}")
print(f"{'test':<8}{'servebench tok/s':>18}{'llama.cpp tok/s':>18}{'ratio':>8}")
for k, name in (("pp", "pp128"), ("tg", "tg128")):
    a = ours[f"{k}_tok_s"]; b = ref[k]
    print(f"{name:<8}{a:>18.1f}{b:>18.1f}{a / b:>8.2f}")
PY
