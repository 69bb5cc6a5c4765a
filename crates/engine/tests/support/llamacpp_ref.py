#!/usr/bin/env python3
"""Reference outputs from llama.cpp (llama-cpp-python) for servebench's parity tests.

Reads one JSON request on stdin and writes one JSON answer on stdout:
  {"model": PATH, "tokenize": [TEXT...], "generate": [{"prompt_ids": [...], "n": 32}...]}
->{"tokenize": [[ids]...], "generate": [{"greedy_ids": [...], "last_logits": [...]}...]}
Tokenization is llama.cpp's with add_bos=False, special=True (as the engine's
`tokenize` is compared); greedy generation stops at any end-of-generation token.
With "vocab_only": true only the vocabulary loads (llama.cpp's ggml-vocab-*
files); "tokenize_plain" then gives ids with special=False, and "eog_ids":
true every id llama.cpp ends generation on.
"n_ctx" (default 2048) sizes the context; prompts are evaluated in llama.cpp's
default batches of 512 tokens.
Exit code 3 when llama_cpp is not installed, so tests can tell "missing" from "broken".
"""
import json
import sys

try:
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama
except ImportError:
    sys.stderr.write("llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)\n")
    sys.exit(3)


def main():
    req = json.load(sys.stdin)
    if req.get("vocab_only"):
        llm = Llama(model_path=req["model"], vocab_only=True, verbose=False)
    else:
        llm = Llama(model_path=req["model"], n_ctx=req.get("n_ctx", 2048), n_threads=2, logits_all=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    out = {"tokenize": [], "generate": []}
    for text in req.get("tokenize", []):
        out["tokenize"].append(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
    if "tokenize_plain" in req:
        out["tokenize_plain"] = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in req["tokenize_plain"]]
    if req.get("eog_ids"):
        n = llama_cpp.llama_vocab_n_tokens(vocab)
        out["eog_ids"] = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    for g in req.get("generate", []):
        llm.reset()
        llm.eval(g["prompt_ids"])
        last = [float(x) for x in llm.scores[llm.n_tokens - 1]]
        gen = []
        for _ in range(g.get("n", 32)):
            # the first of equal maxima, as the engine's greedy choice
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if llama_cpp.llama_vocab_is_eog(vocab, nxt):
                break
            gen.append(nxt)
            llm.eval([nxt])
        out["generate"].append({"greedy_ids": gen, "last_logits": last})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
