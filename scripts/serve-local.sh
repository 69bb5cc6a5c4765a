# Sourced by the bench-*.sh scripts: builds servebench, starts its server on
# the default model with THREADS threads on PORT, waits until it is healthy,
# and stops it (and removes the scratch folder DIR) when the script exits.
# Sets BIN (the binary), DIR (a scratch folder) and PID (the server).
cargo build --release --quiet -p servebench
BIN=target/release/servebench
DIR=$(mktemp -d)
"$BIN" serve --model smollm2 --threads "$THREADS" --port "$PORT" 2>"$DIR/serve.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
