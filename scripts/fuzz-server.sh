#!/usr/bin/env bash
# Fuzzes the server's HTTP API with schemathesis, driven by the server's own
# OpenAPI document, on the tiny synthetic model; fails on any 5xx or crash.
#   bash scripts/fuzz-server.sh [MAX_EXAMPLES_PER_OPERATION]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v schemathesis >/dev/null || python3 -m pip install --quiet "schemathesis==4.32.5"
cargo build --release --quiet -p servebench
BIN=target/release/servebench
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN" make-model --arch-preset tiny --quant q8_0 --seed 1 --out "$DIR/tiny.gguf" >/dev/null
PORT=${PORT:-8297}
"$BIN" serve --model "$DIR/tiny.gguf" --threads 1 --port "$PORT" 2>"$DIR/serve.log" &
PID=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
schemathesis run "http://127.0.0.1:$PORT/api-doc/openapi.json" \
  --checks not_a_server_error --max-examples "${1:-1000}" -w 2 --request-timeout 60
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "server unhealthy after fuzzing"; exit 1; }
kill -0 "$PID" || { echo "server died"; cat "$DIR/serve.log"; exit 1; }
echo "fuzz: no 5xx, server healthy"
