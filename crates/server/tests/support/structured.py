"""Drives a servebench server's structured-output, tool-calling, logprobs
and n features with the ecosystem's own clients from PyPI (openai,
text-generation) and checks every JSON answer with the jsonschema package.

Usage: structured.py URL
Prints one JSON object of findings (counts and failures) for the Rust test
to assert on. Exit 3 when a package is missing, so the test can skip (or
fail in CI).
"""
import json
import re
import sys

try:
    import jsonschema
    import openai
    import pydantic
    import text_generation
    from text_generation.types import Grammar, GrammarType
except ImportError as e:  # pragma: no cover
    print(f"missing package: {e}", file=sys.stderr)
    sys.exit(3)

url = sys.argv[1]
oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=300)
tgi = text_generation.Client(url, timeout=300)
out = {"failures": []}


def fail(what, detail):
    out["failures"].append(f"{what}: {detail}")


def check_json(what, text, schema):
    try:
        value = json.loads(text)
    except ValueError as e:
        fail(what, f"not JSON ({e}): {text!r}")
        return None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as e:
        fail(what, f"does not match its schema ({e.message}): {text!r}")
        return None
    return value


# 1. A Pydantic model through the client's own parse helper.
class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    country: str = pydantic.Field(max_length=40)
    population: int = pydantic.Field(ge=0, le=100_000_000)


parse = getattr(oa.chat.completions, "parse", None) or oa.beta.chat.completions.parse
r = parse(model="smollm2", temperature=0, max_tokens=120,
          messages=[{"role": "user", "content": "Describe Paris as JSON."}],
          response_format=City)
parsed = r.choices[0].message.parsed
out["parsed"] = parsed.model_dump() if parsed is not None else None
if parsed is None:
    fail("parse", r.choices[0].message.content)
check_json("parse", r.choices[0].message.content, City.model_json_schema())

# 2. JSON mode.
r = oa.chat.completions.create(model="smollm2", temperature=0, max_tokens=200,
                               messages=[{"role": "user", "content":
                                          "Give a JSON object with only the name and the age of a cat."}],
                               response_format={"type": "json_object"})
check_json("json_object", r.choices[0].message.content, {"type": "object"})

# 3. Twenty schemas, ten requests each (sampled, so the answers differ).
SCHEMAS = []
for i in range(20):
    props = {
        "id": {"type": "integer", "minimum": i, "maximum": 1000 + i},
        "ok": {"type": "boolean"},
        "kind": {"enum": [f"k{i}", f"kind-{i}", "other"]},
    }
    if i % 2:
        props["tags"] = {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}
    if i % 3 == 0:
        props["name"] = {"type": "string", "maxLength": 8 + i}
    if i % 4 == 1:
        props["score"] = {"type": "integer", "minimum": 0, "maximum": 100}
    if i % 5 == 2:
        props["inner"] = {"type": "object",
                          "properties": {"x": {"type": "integer", "minimum": -50, "maximum": 50}},
                          "required": ["x"], "additionalProperties": False}
    SCHEMAS.append({"type": "object", "properties": props, "required": sorted(props),
                    "additionalProperties": False})
valid = 0
for n in range(200):
    schema = SCHEMAS[n % 20]
    r = oa.chat.completions.create(
        model="smollm2", temperature=0.8, seed=n, max_tokens=200,
        messages=[{"role": "user", "content": f"Record number {n} as JSON."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": f"s{n % 20}", "schema": schema, "strict": True}})
    if check_json(f"schema {n % 20} request {n}", r.choices[0].message.content, schema) is not None:
        valid += 1
out["schema_requests_valid"] = valid

# 4. TGI's client: a JSON grammar, a regex grammar, top_n_tokens.
schema = SCHEMAS[3]
r = tgi.generate("A record as JSON:", max_new_tokens=200,
                 grammar=Grammar(type=GrammarType.Json, value=schema))
check_json("tgi json grammar", r.generated_text, schema)
rx = r"(yes|no), [0-9]{1,3} (apples|pears)"
r = tgi.generate("Do you like fruit?", max_new_tokens=30,
                 grammar=Grammar(type=GrammarType.Regex, value=rx))
out["regex_text"] = r.generated_text
if not re.fullmatch(rx, r.generated_text):
    fail("tgi regex grammar", repr(r.generated_text))
r = tgi.generate("The capital of France is", max_new_tokens=8, top_n_tokens=3,
                 decoder_input_details=True)
tops = r.details.top_tokens
if not tops or any(len(t) != 3 for t in tops):
    fail("top_n_tokens", tops)
elif any([x.logprob for x in t] != sorted([x.logprob for x in t], reverse=True) for t in tops):
    fail("top_n_tokens order", tops)
if any(p.logprob is None for p in r.details.prefill[1:]):
    fail("prefill logprobs", r.details.prefill)
streamed_tops = [ev.top_tokens for ev in tgi.generate_stream("The capital of France is",
                                                             max_new_tokens=4, top_n_tokens=2)]
if any(t is None or len(t) != 2 for t in streamed_tops):
    fail("streamed top_n_tokens", streamed_tops)

# 5. Tools, answered as OpenAI does, streamed and not.
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "maxLength": 30},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_time", "parameters": {
            "type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}},
            "required": ["zone"], "additionalProperties": False}}}]
ARGS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
calls = 0
for choice in ["required", {"type": "function", "function": {"name": "get_weather"}}]:
    r = oa.chat.completions.create(model="smollm2", temperature=0, max_tokens=80,
                                   messages=msgs, tools=TOOLS, tool_choice=choice)
    c = r.choices[0]
    if c.finish_reason != "tool_calls" or not c.message.tool_calls:
        fail(f"tools {choice}", r)
        continue
    call = c.message.tool_calls[0]
    if isinstance(choice, dict) and call.function.name != "get_weather":
        fail("named tool", call)
    check_json(f"tool arguments {choice}", call.function.arguments, ARGS[call.function.name])
    calls += 1
    # Streamed: the same call, assembled from delta.tool_calls chunks.
    name, args, finish = None, "", None
    for ch in oa.chat.completions.create(model="smollm2", temperature=0, max_tokens=80,
                                         messages=msgs, tools=TOOLS, tool_choice=choice,
                                         stream=True):
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        for tc in d.tool_calls or []:
            if tc.function.name:
                name = tc.function.name
            args += tc.function.arguments or ""
        finish = ch.choices[0].finish_reason or finish
    if finish != "tool_calls" or name != call.function.name or args != call.function.arguments:
        fail(f"streamed tools {choice}", (finish, name, args, call))
    else:
        calls += 1
# A conversation that carries the call and its result back.
r = oa.chat.completions.create(model="smollm2", temperature=0, max_tokens=30, tools=TOOLS,
                               messages=msgs + [
                                   {"role": "assistant", "tool_calls": [
                                       {"id": "call_1", "type": "function", "function": {
                                           "name": "get_weather",
                                           "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
                                   {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"}],
                               tool_choice="none")
if r.choices[0].message.content is None or r.choices[0].message.tool_calls:
    fail("tool result turn", r)
out["tool_calls"] = calls

# 6. Logprobs and n.
r = oa.chat.completions.create(model="smollm2", temperature=0, max_tokens=8, logprobs=True,
                               top_logprobs=4, messages=[{"role": "user", "content": "Hi"}])
lp = r.choices[0].logprobs.content
if not lp or any(len(t.top_logprobs) != 4 for t in lp):
    fail("chat logprobs", lp)
elif any(abs(t.logprob - t.top_logprobs[0].logprob) > 1e-4 for t in lp):
    fail("greedy token is the top logprob", lp)
out["chat_logprob_tokens"] = len(lp or [])
r = oa.completions.create(model="smollm2", prompt="One, two,", max_tokens=5, temperature=0,
                          logprobs=2, echo=True)
l = r.choices[0].logprobs
if l.token_logprobs[0] is not None or any(v is None for v in l.token_logprobs[1:]):
    fail("completion echo logprobs", l)
if not r.choices[0].text.startswith("One, two,"):
    fail("echo", r.choices[0].text)
r = oa.chat.completions.create(model="smollm2", temperature=1.0, max_tokens=12, n=3, seed=7,
                               messages=[{"role": "user", "content": "Name a color."}])
out["n_choices"] = sorted(c.index for c in r.choices)
texts = set()
for ch in oa.chat.completions.create(model="smollm2", temperature=1.0, max_tokens=12, n=3, seed=7,
                                     messages=[{"role": "user", "content": "Name a color."}],
                                     stream=True):
    for c in ch.choices:
        texts.add(c.index)
out["n_stream_indexes"] = sorted(texts)

json.dump(out, sys.stdout)
