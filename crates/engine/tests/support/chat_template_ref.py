"""Renders chat templates as llama-cpp-python 0.3.36 does (its
Jinja2ChatFormatter: jinja2 with trim_blocks, lstrip_blocks and
Transformers' extensions), for the chat template parity test.

stdin: a JSON list of {"template", "bos", "eos", "messages",
"add_generation_prompt", "tools"?}; stdout: a JSON list of
{"prompt"} or {"error"}, one per case."""
import json
import sys

try:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
except ImportError:
    sys.stderr.write("llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)\n")
    sys.exit(3)

out = []
for case in json.load(sys.stdin):
    try:
        fmt = Jinja2ChatFormatter(
            template=case["template"],
            eos_token=case["eos"],
            bos_token=case["bos"],
            add_generation_prompt=case["add_generation_prompt"],
        )
        res = fmt(messages=case["messages"], tools=case.get("tools"))
        out.append({"prompt": res.prompt})
    except Exception as e:  # a template's raise_exception, or a jinja error
        out.append({"error": f"{type(e).__name__}: {e}"})
json.dump(out, sys.stdout)
