"""Drives a servebench server with the ecosystem's own clients from PyPI:
text-generation (TGI's client), huggingface_hub's InferenceClient and openai.

Usage: clients.py URL < {"prompts": [...], "max_new_tokens": N}
Prints one JSON object: for each client and mode, the generated texts (and
token counts where the client reports them). Exit 3 when a client package
is missing, so the Rust test can skip (or fail in CI).
"""
import json
import sys

try:
    import huggingface_hub
    import openai
    import text_generation
except ImportError as e:  # pragma: no cover
    print(f"missing client package: {e}", file=sys.stderr)
    sys.exit(3)

url = sys.argv[1]
req = json.load(sys.stdin)
prompts, n = req["prompts"], req["max_new_tokens"]
out = {}

tgi = text_generation.Client(url, timeout=120)
out["text_generation.generate"] = []
for p in prompts:
    r = tgi.generate(p, max_new_tokens=n, decoder_input_details=True)
    out["text_generation.generate"].append(
        {"text": r.generated_text, "tokens": r.details.generated_tokens,
         "finish_reason": str(r.details.finish_reason.value)})
out["text_generation.generate_stream"] = []
for p in prompts:
    text, events, final = "", 0, None
    for ev in tgi.generate_stream(p, max_new_tokens=n):
        events += 1
        if not ev.token.special:
            text += ev.token.text
        if ev.generated_text is not None:
            final = ev.generated_text
    out["text_generation.generate_stream"].append(
        {"text": text, "tokens": events, "final_text": final})

hub = huggingface_hub.InferenceClient(model=url, timeout=120)
out["huggingface_hub.text_generation"] = [
    {"text": hub.text_generation(p, max_new_tokens=n)} for p in prompts]
out["huggingface_hub.text_generation_details"] = []
for p in prompts:
    r = hub.text_generation(p, max_new_tokens=n, details=True)
    out["huggingface_hub.text_generation_details"].append(
        {"text": r.generated_text, "tokens": r.details.generated_tokens})
out["huggingface_hub.text_generation_stream"] = [
    {"text": "".join(hub.text_generation(p, max_new_tokens=n, stream=True))}
    for p in prompts]

oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=120)
out["openai.completions"] = []
for p in prompts:
    r = oa.completions.create(model="smollm2", prompt=p, max_tokens=n, temperature=0)
    out["openai.completions"].append(
        {"text": r.choices[0].text, "tokens": r.usage.completion_tokens})
out["openai.completions_stream"] = []
for p in prompts:
    text, usage = "", None
    for c in oa.completions.create(model="smollm2", prompt=p, max_tokens=n, temperature=0,
                                   stream=True, stream_options={"include_usage": True}):
        if c.choices:
            text += c.choices[0].text
        if c.usage is not None:
            usage = c.usage.completion_tokens
    out["openai.completions_stream"].append({"text": text, "tokens": usage})
out["openai.chat"] = []
for p in prompts:
    r = oa.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": p}],
                                   max_tokens=n, temperature=0)
    out["openai.chat"].append(
        {"text": r.choices[0].message.content, "tokens": r.usage.completion_tokens})
out["openai.chat_stream"] = []
for p in prompts:
    text, usage = "", None
    for c in oa.chat.completions.create(model="smollm2",
                                        messages=[{"role": "user", "content": p}],
                                        max_tokens=n, temperature=0, stream=True,
                                        stream_options={"include_usage": True}):
        if c.choices and c.choices[0].delta.content:
            text += c.choices[0].delta.content
        if c.usage is not None:
            usage = c.usage.completion_tokens
    out["openai.chat_stream"].append({"text": text, "tokens": usage})

json.dump(out, sys.stdout)
