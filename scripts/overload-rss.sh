#!/usr/bin/env bash
# Memory and throughput under overload: servebench's server on a model (default
# the default model, --threads THREADS), driven far above its capacity by
# `servebench bench`: Poisson arrivals at RATE per second, at most 64 requests in
# flight (arrivals beyond are dropped), prompts of 300 +- 200 tokens, MAX_NEW new
# tokens each, for DURATION; then a closed loop of 64 users for CLOSED (its
# capacity). Prints the server's peak RSS during the overload (VmHWM, reset
# after startup so the load's own spike is left out) against weights + KV budget
# (weights = the file, and = the resident size after loading), the KV pool's
# gauges, and output tokens/s under overload vs closed loop.
#   bash scripts/overload-rss.sh [THREADS] [DURATION] [CLOSED]   (defaults 2, 180s, 60s)
# Environment: MODEL (a GGUF path; default smollm2), RATE (20), MAX_NEW (50),
# SERVE_ARGS (more `serve` flags, e.g. "--max-batch-total-tokens 16384"),
# BIN (the servebench binary to serve with, e.g. another build; default this
# checkout's), PORT (8391).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
DURATION=${2:-180s}
CLOSED=${3:-60s}
RATE=${RATE:-20}
MAX_NEW=${MAX_NEW:-50}
PORT=${PORT:-8391}
cargo build --release --quiet -p servebench
BENCH=target/release/servebench
BIN=${BIN:-$BENCH}
MODEL=${MODEL:-$("$BENCH" fetch-model)}
DIR=$(mktemp -d)
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
"$BIN" serve --model "$MODEL" --threads "$THREADS" --port "$PORT" ${SERVE_ARGS:-} 2>"$DIR/serve.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$DIR/serve.log" >&2; exit 1; }
sed 's/^/  serve: /' "$DIR/serve.log"
rss_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
LOADED_KIB=$(rss_kib VmRSS)
# Writing 5 to clear_refs resets the peak (Linux >= 4.0).
echo 5 >"/proc/$PID/clear_refs"
BUDGET=$(curl -sf "http://127.0.0.1:$PORT/info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["max_batch_total_tokens"])')
load() { # NAME, then bench flags
  local name=$1
  shift
  "$BENCH" bench --url "http://127.0.0.1:$PORT" --api tgi --input-tokens 300,200 \
    --tokenizer "$MODEL" --max-new-tokens "$MAX_NEW" --ignore-eos --warmup 0 --pause 0s \
    --timeout 1800s --out "$DIR/$name" "$@" >"$DIR/$name.log" 2>&1 ||
    # Exit status 1 means some requests failed or were dropped: expected here.
    [ -f "$DIR/$name/summary.json" ] || { tail -5 "$DIR/$name.log" >&2; exit 1; }
}
load overload --rate "$RATE" --max-in-flight 64 --duration "$DURATION"
PEAK_KIB=$(rss_kib VmHWM)
NOW_KIB=$(rss_kib VmRSS)
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E '^servebench_kv_' >"$DIR/kv.txt" || true
load closed --concurrency 64 --duration "$CLOSED"
python3 - "$DIR" "$MODEL" "$BUDGET" "$LOADED_KIB" "$PEAK_KIB" "$NOW_KIB" <<'PY'
import json, os, sys
d, model, budget, loaded, peak, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:])
kv = dict(l.split() for l in open(f"{d}/kv.txt"))
per_token = 0
for line in open(f"{d}/serve.log"):
    if "bytes a token" in line:
        per_token = int(line.split(" bytes a token")[0].split()[-1])
mib = lambda b: b / 2**20
file = os.path.getsize(model)
budget_b = budget * per_token
def level(name):
    return json.load(open(f"{d}/{name}/summary.json"))["levels"][0]
o, c = level("overload"), level("closed")
print(f"KV budget: {budget} tokens x {per_token} B = {mib(budget_b):.0f} MiB")
print(f"weights: file {mib(file):.0f} MiB; resident after loading {loaded / 1024:.0f} MiB")
print(f"peak RSS under overload: {peak / 1024:.0f} MiB (now {now / 1024:.0f} MiB)")
for name, w in (("file", file), ("resident", loaded * 1024)):
    bound = 1.1 * (w + budget_b)
    print(f"  bound 1.1 x (weights[{name}] + budget) = {mib(bound):.0f} MiB: {'within' if peak * 1024 <= bound else 'OVER'}")
print("KV pool after the overload: " + ", ".join(f"{k.removeprefix('servebench_kv_')} {float(v):.0f}" for k, v in kv.items()))
print(f"overload: {o['success']} done, {o['failed']} failed, {o['dropped']} dropped, {o['output_throughput_tok_s']:.1f} output tok/s")
print(f"closed loop (64 users): {c['success']} done, {c['output_throughput_tok_s']:.1f} output tok/s")
print(f"overload / closed-loop throughput: {o['output_throughput_tok_s'] / max(c['output_throughput_tok_s'], 1e-9):.2f}")
PY
