#!/usr/bin/env python3
"""An independent load client (Python standard library only) to check
servebench bench's numbers against: closed loop, `concurrency` threads, each
sending its next streaming OpenAI /v1/completions request as soon as the
previous one ended, until `requests` have been sent.

Definitions follow METRICS.md, written again from scratch here:
- ttft: from the moment the thread became free (scheduled) to the first SSE
  event whose choices carry non-empty text;
- output tokens: usage.completion_tokens of the final chunk;
- tpot: (e2e - ttft) / (tokens - 1);
- output throughput: sum of tokens / (first scheduled -> last completion).

Usage: ref_client.py '{"url": "http://127.0.0.1:8080", "prompts": ["...", ...],
  "max_tokens": 32, "concurrency": 4, "requests": 16}'
Request k (from 0) sends prompts[k % len(prompts)].
An optional "extra_body" object is merged into every request body.
An optional "start_at" (Unix time, seconds) delays the measured load until
then, so that another client can start its own at the same moment.
Prints one JSON object.
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def one_request(host, port, body):
    """Returns (start, first_token, end, completion_tokens), perf_counter times."""
    start = time.perf_counter()
    # A fresh connection per request: llama-server closes streamed ones anyway.
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("POST", "/v1/completions", body=body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    first = None
    tokens = None
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            continue
        chunk = json.loads(data)
        if first is None and any(c.get("text") for c in chunk.get("choices", [])):
            first = time.perf_counter()
        usage = chunk.get("usage")
        if usage and usage.get("completion_tokens") is not None:
            tokens = usage["completion_tokens"]
    end = time.perf_counter()
    conn.close()
    return start, first, end, tokens


def main():
    cfg = json.loads(sys.argv[1])
    u = urllib.parse.urlsplit(cfg["url"])
    prompts = cfg["prompts"]

    def body(k):
        return json.dumps({
            "prompt": prompts[k % len(prompts)], "max_tokens": cfg["max_tokens"],
            "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True, "temperature": 0,
            **cfg.get("extra_body", {}),
        })

    results, errors = [], []
    lock = threading.Lock()
    issued = [0]

    def user():
        while True:
            with lock:
                k = issued[0]
                if k >= cfg["requests"]:
                    return
                issued[0] += 1
            try:
                r = one_request(u.hostname, u.port, body(k))
                with lock:
                    results.append(r)
            except Exception as e:  # recorded, not hidden
                with lock:
                    errors.append(str(e))

    if "start_at" in cfg:
        time.sleep(max(0.0, cfg["start_at"] - time.time()))
    threads = [threading.Thread(target=user) for _ in range(cfg["concurrency"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ttft = [(f - s) * 1e3 for s, f, e, n in results if f is not None]
    tpot = [((e - f) * 1e3) / (n - 1) for s, f, e, n in results if f is not None and n and n > 1]
    tokens = [n for s, f, e, n in results]
    duration = max(e for s, f, e, n in results) - min(s for s, f, e, n in results)
    print(json.dumps({
        "success": len(results),
        "failed": len(errors),
        "errors": errors[:5],
        "output_tokens": tokens,
        "output_tokens_total": sum(n or 0 for n in tokens),
        "duration_s": duration,
        "output_throughput_tok_s": sum(n or 0 for n in tokens) / duration,
        "ttft_ms_p50": statistics.median(ttft),
        "tpot_ms_p50": statistics.median(tpot),
    }))


if __name__ == "__main__":
    main()
