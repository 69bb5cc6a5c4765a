#!/usr/bin/env bash
# servebench's server next to llama.cpp's llama-server: same GGUF, same thread
# count, both driven by `servebench bench` over the same API
# (openai-completions, streaming) with the same load: the study's prompt,
# 64 new tokens (NEW_TOKENS) with ignore_eos, at 1, 5 and 20 concurrent requests. Rounds
# alternate A/B/A/B (llama.cpp first, then servebench, per level) so that
# the box's drifting load hits both alike. Prints, per level and metric, the
# median over rounds of each server and the ratio servebench / llama.cpp,
# plus each server's peak RSS (VmHWM) after serving 20 streams.
#   bash scripts/compare-llama-server.sh [THREADS] [ROUNDS] [REQUESTS_PER_STREAM]
#   (defaults 2, 3, 4); LEVELS="1 5 20" overrides the levels, MODEL=FILE.gguf the
#   model (default: the shipped SmolLM2), LLAMA_CTX llama-server's total context
#   (default 40960 = 20 slots x 2048; a 7B's f16 KV needs 0.5 MiB per token, so
#   give it e.g. 4096 there), NEW_TOKENS the new tokens per request (default
#   64) and TIMEOUT bench's per-request limit (default 60s; a 7B on 2 threads
#   at 20 streams needs minutes, e.g. NEW_TOKENS=16 TIMEOUT=900s). Each level
#   result is printed as it is measured. Also prints each server's load time
#   (start to /health answering, one server at a time) and file size.
# Needs the llama.cpp peer (../shared/peers/llama-server.sh builds it once into
# ~/.cache/servebench-peers, about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
PER_STREAM=${3:-4}
LEVELS=${LEVELS:-1 5 20}
NEW_TOKENS=${NEW_TOKENS:-64}
TIMEOUT=${TIMEOUT:-60s}
PEERS=${SERVEBENCH_PEERS_SCRIPT:-../shared/peers/llama-server.sh}
cargo build --release --quiet -p servebench
BIN=target/release/servebench
MODEL=${MODEL:-$("$BIN" fetch-model)}
LLAMA_CTX=${LLAMA_CTX:-40960}
bash "$PEERS" --build-only >/dev/null
DIR=$(mktemp -d)
PORT_L=${PORT_L:-8291}
PORT_S=${PORT_S:-8292}
# Seconds until the server on port $1 answers /health (up to 10 minutes).
loaded() {
  local t0=$(date +%s.%N)
  for _ in $(seq 3000); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$1/health" >/dev/null || { echo "server on port $1 did not start" >&2; exit 1; }
  awk "BEGIN { print $(date +%s.%N) - $t0 }"
}
# llama-server: 20 slots sharing a context of LLAMA_CTX tokens (continuous
# batching is on by default); servebench: its TGI defaults. One starts after
# the other has loaded, so their load times are each alone.
trap 'kill "${PID_L:-}" "${PID_S:-}" 2>/dev/null || true; rm -rf "$DIR"' EXIT
bash "$PEERS" -m "$MODEL" -t "$THREADS" -tb "$THREADS" --port "$PORT_L" -np 20 -c "$LLAMA_CTX" \
  >"$DIR/llama.log" 2>&1 &
PID_L=$!
LOAD_L=$(loaded "$PORT_L")
"$BIN" serve --model "$MODEL" --threads "$THREADS" --port "$PORT_S" 2>"$DIR/serve.log" &
PID_S=$!
LOAD_S=$(loaded "$PORT_S")
for r in $(seq "$ROUNDS"); do
  for c in $LEVELS; do
    for who in llama servebench; do
      port=$PORT_L; [ "$who" = servebench ] && port=$PORT_S
      "$BIN" bench --url "http://127.0.0.1:$port" --api openai-completions --model-name smollm2 \
        --concurrency "$c" --requests $((c * PER_STREAM)) --warmup "$c" --pause 1s \
        --max-new-tokens "$NEW_TOKENS" --ignore-eos --timeout "$TIMEOUT" \
        --out "$DIR/$who-r$r-c$c" >/dev/null 2>&1 \
        || { echo "bench against $who at c=$c failed; see $DIR/$who-r$r-c$c" >&2; exit 1; }
      python3 -c 'import json, sys; l = json.load(open(sys.argv[1]))["levels"][0]; print("round %s c=%s %s: %.2f output tokens/s" % (*sys.argv[2:5], l["output_throughput_tok_s"]))' \
        "$DIR/$who-r$r-c$c/summary.json" "$r" "$c" "$who"
    done
  done
done
# The peer script execs llama-server, so $PID_L is the server's own pid.
rss() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
python3 - "$DIR" "$ROUNDS" "$THREADS" "$(rss "$PID_L")" "$(rss "$PID_S")" "$LOAD_L" "$LOAD_S" "$(stat -c %s "$MODEL")" $LEVELS <<'PY'
import json, statistics, sys
d, rounds, threads, rss_l, rss_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
load_l, load_s, file_bytes = float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
levels = [int(c) for c in sys.argv[9:]]
def level(who, r, c):
    return json.load(open(f"{d}/{who}-r{r}-c{c}/summary.json"))["levels"][0]
metrics = [
    ("output_throughput_tok_s", lambda l: l["output_throughput_tok_s"]),
    ("ttft_ms p50", lambda l: l["ttft_ms"]["p50"]),
    ("tpot_ms p50", lambda l: l["tpot_ms"]["p50"]),
]
print(f"threads {threads}, {rounds} alternating rounds, medians over rounds")
print(f"{'level':<6}{'metric':<26}{'llama.cpp':>12}{'servebench':>12}{'ratio':>8}")
for c in levels:
    for name, get in metrics:
        a = statistics.median(get(level("llama", r, c)) for r in range(1, rounds + 1))
        b = statistics.median(get(level("servebench", r, c)) for r in range(1, rounds + 1))
        print(f"c={c:<4}{name:<26}{a:>12.2f}{b:>12.2f}{b / a:>8.2f}")
print(f"{'peak RSS (MiB)':<32}{rss_l / 1024:>12.1f}{rss_s / 1024:>12.1f}{rss_s / rss_l:>8.2f}")
print(f"{'load time (s)':<32}{load_l:>12.1f}{load_s:>12.1f}{load_s / load_l:>8.2f}")
print(f"model file {file_bytes / 2**20:.1f} MiB")
PY
