#!/usr/bin/env bash
# Does `servebench predict` extrapolate in load on this machine? Runs the
# default study's deployments (crates/study/default_study.toml) at levels 1
# and 5, fits the predictor on them, then measures the same deployments at
# 10 and 20 and compares: median and p90 absolute % error of ms/token and
# throughput over the 12 predicted runs. About 6 minutes on 2 cores.
#   bash scripts/validate-predict-local.sh [OUT]     (default: a temp folder)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p servebench
BIN=target/release/servebench
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
sed 's/^levels = .*/levels = [1, 5]/' crates/study/default_study.toml >"$OUT/calibrate.toml"
sed 's/^levels = .*/levels = [10, 20]/' crates/study/default_study.toml >"$OUT/held-out.toml"
"$BIN" study --config "$OUT/calibrate.toml" --out "$OUT/calibrate" >/dev/null
"$BIN" predict --config "$OUT/held-out.toml" --calibrate "$OUT/calibrate" --json \
  >"$OUT/predicted.jsonl" 2>"$OUT/fit.txt"
"$BIN" study --config "$OUT/held-out.toml" --out "$OUT/held-out" >/dev/null
python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
pred = {}
for line in open(f"{out}/predicted.jsonl"):
    p = json.loads(line)
    pred[(p["instance"], p["quantize"], p["concurrency"])] = p
rows = [json.loads(l) for l in open(f"{out}/held-out/runs.jsonl") if l.strip()]
ms, tok = [], []
print(f"{'deployment':<22} {'c':>3} {'ms/tok':>8} {'pred':>8} {'err%':>7} {'tok/s':>8} {'pred':>8} {'err%':>7}")
for r in rows:
    if r["status"] != "ok":
        print(f"{r['deployment']:<22} {r['concurrency']:>3} failed: {r['error']}")
        continue
    p = pred[(r["instance"], r["quantization"], r["concurrency"])]
    e_ms = p["ms_per_token"] / r["latency_ms_per_token"] - 1
    e_tok = p["output_throughput_tok_s"] / r["output_throughput_tok_s"] - 1
    ms.append(abs(e_ms) * 100); tok.append(abs(e_tok) * 100)
    print(f"{r['deployment']:<22} {r['concurrency']:>3} {r['latency_ms_per_token']:>8.2f} {p['ms_per_token']:>8.2f} {e_ms*100:>+6.1f}% "
          f"{r['output_throughput_tok_s']:>8.2f} {p['output_throughput_tok_s']:>8.2f} {e_tok*100:>+6.1f}%")
q = lambda v, f: sorted(v)[min(len(v) - 1, int(round(f * (len(v) - 1))))]
print(f"{len(ms)} held-out runs: ms/token median {statistics.median(ms):.1f}% p90 {q(ms, .9):.1f}%; "
      f"throughput median {statistics.median(tok):.1f}% p90 {q(tok, .9):.1f}%")
PY
echo "folder: $OUT (fit and residuals: $OUT/fit.txt)"
