#!/usr/bin/env bash
# What does constrained decoding cost? servebench's server on the default
# model, driven by `servebench bench` at 8 concurrent streams over
# /v1/chat/completions, 64 new tokens with ignore_eos, in three setups run
# alternately (A/B/C, A/B/C, ...):
#   free   8 unconstrained streams
#   json   8 streams with a JSON-schema `response_format` (a long array of
#          objects, so every one of the 64 tokens is generated under the grammar)
#   mixed  4 unconstrained + 4 constrained streams at once (two bench runs)
# Prints each round and the medians of: json / free aggregate output tokens/s
# (the goal: >= 0.90), and the median time per output token of unconstrained
# streams in the mixed batch over that of the free batch (goal: < 1.05).
#   bash scripts/bench-constrained.sh [THREADS] [ROUNDS]     (defaults 2, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
PORT=${PORT:-8194}
source scripts/serve-local.sh
SCHEMA='{"type": "object", "properties": {"people": {"type": "array", "minItems": 50,
  "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
  "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": false}}},
  "required": ["people"], "additionalProperties": false}'
JSON="{\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"people\", \"schema\": $SCHEMA, \"strict\": true}}}"
PROMPT="List fifty people with their ages as JSON."
bench() { # CONCURRENCY OUT [EXTRA_BODY]
  local extra=()
  [ -n "${3:-}" ] && extra=(--extra-body "$3")
  "$BIN" bench --url "http://127.0.0.1:$PORT" --api openai-chat --concurrency "$1" \
    --requests $(($1 * 6)) --warmup "$1" --pause 1s --max-new-tokens 64 --ignore-eos \
    --prompt "$PROMPT" "${extra[@]}" --out "$2" >/dev/null 2>&1
}
for r in $(seq "$ROUNDS"); do
  bench 8 "$DIR/r$r-free"
  bench 8 "$DIR/r$r-json" "$JSON"
  bench 4 "$DIR/r$r-mixed-free" &
  B=$!
  bench 4 "$DIR/r$r-mixed-json" "$JSON"
  wait "$B"
done
python3 - "$DIR" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def level(r, name):
    return json.load(open(f"{d}/r{r}-{name}/summary.json"))["levels"][0]
ratios, losses = [], []
for r in range(1, rounds + 1):
    free, js = level(r, "free"), level(r, "json")
    mixed = level(r, "mixed-free")
    ratio = js["output_throughput_tok_s"] / free["output_throughput_tok_s"]
    loss = mixed["tpot_ms"]["p50"] / free["tpot_ms"]["p50"]
    ratios.append(ratio)
    losses.append(loss)
    print(f"round {r}: free {free['output_throughput_tok_s']:.1f} tok/s, "
          f"json {js['output_throughput_tok_s']:.1f} tok/s (ratio {ratio:.3f}); "
          f"tpot p50 free {free['tpot_ms']['p50']:.2f} ms, "
          f"unconstrained in mixed {mixed['tpot_ms']['p50']:.2f} ms (x{loss:.3f})")
print(f"median json/free throughput: {statistics.median(ratios):.3f} (goal >= 0.90)")
print(f"median mixed-unconstrained/free tpot: {statistics.median(losses):.3f} (goal < 1.05)")
PY
