//! The request fields beyond the basics, on a real server with the tiny
//! model: log-probabilities equal the engine's own, seeded sampling gives
//! the same text alone or in a batch, grammars hold, penalties, bias, `n`
//! and stop arrays do what they say.

mod support;

use futures_util::future::join_all;
use serde_json::{json, Value};
use servebench_engine::cpu::ggml_numerics::log_sum_exp;
use servebench_engine::{Engine, SeqStep};
use support::{config_for, tiny_engine, TestServer};

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let resp = client.post(url).json(body).send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{url} {body}: {status} {v}");
    v
}

/// Log-probability of each token of `ids` after the first, from one
/// forward pass over all of them.
fn engine_logprobs(engine: &Engine, ids: &[u32]) -> Vec<f32> {
    let vocab = engine.model.config().vocab_size;
    let mut cache = engine.model.new_cache();
    let mut step = SeqStep::new(ids, &mut cache);
    step.all_logits = true;
    let logits = engine.model.forward(&mut [step]).unwrap();
    logits
        .chunks(vocab)
        .zip(&ids[1..])
        .map(|(row, &next)| row[next as usize] - log_sum_exp(row))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_equal_the_engines_and_top_lists_are_sorted() {
    let engine = tiny_engine();
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let client = reqwest::Client::new();
    let r = post(
        &client,
        &server.at("/generate"),
        &json!({"inputs": "The quick brown fox", "parameters": {
            "max_new_tokens": 12, "ignore_eos": true, "details": true,
            "decoder_input_details": true, "top_n_tokens": 4}}),
    )
    .await;
    let d = &r["details"];
    let prefill: Vec<u32> = d["prefill"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    let tokens = d["tokens"].as_array().unwrap();
    let generated: Vec<u32> = tokens
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(generated.len(), 12);
    let all: Vec<u32> = prefill.iter().chain(&generated).copied().collect();
    let want = engine_logprobs(&engine, &all);
    assert!(d["prefill"][0]["logprob"].is_null());
    let got: Vec<f32> = d["prefill"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .chain(tokens)
        .map(|t| t["logprob"].as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-4, "token {i}: {g} vs engine {w}");
    }
    let tops = d["top_tokens"].as_array().unwrap();
    assert_eq!(tops.len(), 12);
    for (step, top) in tops.iter().enumerate() {
        let lps: Vec<f64> = top
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["logprob"].as_f64().unwrap())
            .collect();
        assert_eq!(lps.len(), 4, "step {step}");
        assert!(lps.windows(2).all(|w| w[0] >= w[1]), "step {step}: {lps:?}");
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["id"], tokens[step]["id"], "step {step}");
    }

    // OpenAI chat: the same values in its shape.
    let r = post(
        &client,
        &server.at("/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0,
                "max_tokens": 6, "ignore_eos": true, "logprobs": true, "top_logprobs": 20}),
    )
    .await;
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 6);
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 20);
        assert!(
            (t["logprob"].as_f64().unwrap() - top[0]["logprob"].as_f64().unwrap()).abs() < 1e-6
        );
        assert!(t["bytes"].is_array());
    }
    // Completions: echo puts the prompt's tokens first, the first without a value.
    let r = post(
        &client,
        &server.at("/v1/completions"),
        &json!({"prompt": "One two three", "max_tokens": 4, "temperature": 0,
                "ignore_eos": true, "logprobs": 3, "echo": true}),
    )
    .await;
    let l = &r["choices"][0]["logprobs"];
    let n_prompt = engine.tokenizer.encode("One two three", true, true).len();
    let token_logprobs = l["token_logprobs"].as_array().unwrap();
    assert_eq!(token_logprobs.len(), n_prompt + 4, "{l}");
    assert!(token_logprobs[0].is_null());
    assert!(token_logprobs[1..].iter().all(Value::is_number));
    assert_eq!(l["top_logprobs"][n_prompt].as_object().unwrap().len(), 3);
    assert!(r["choices"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("One two three"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_gives_the_same_sample_alone_or_in_a_batch_of_eight() {
    let engine = tiny_engine();
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let client = reqwest::Client::new();
    let url = server.at("/generate");
    let body = |prompt: &str, seed: u64| {
        json!({"inputs": prompt, "parameters": {"max_new_tokens": 24, "ignore_eos": true,
               "do_sample": true, "temperature": 1.3, "top_k": 50, "seed": seed}})
    };
    let text = |v: Value| v["generated_text"].as_str().unwrap().to_string();
    let alone = text(post(&client, &url, &body("Once upon", 42)).await);
    let again = text(post(&client, &url, &body("Once upon", 42)).await);
    assert_eq!(alone, again);
    let other = text(post(&client, &url, &body("Once upon", 43)).await);
    assert_ne!(alone, other, "a different seed samples differently");
    let prompts = [
        "Once upon",
        "The quick brown fox",
        "Hello, world!",
        "Llamas live in the Andes",
        "1 2 3",
        "A",
        "def f(x):",
        "Once upon",
    ];
    let bodies: Vec<Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| body(p, if i == 0 { 42 } else { i as u64 }))
        .collect();
    let batch = join_all(bodies.iter().map(|b| post(&client, &url, b))).await;
    assert_eq!(text(batch[0].clone()), alone);
    // The same prompt with another seed in the same batch differs.
    assert_ne!(text(batch[7].clone()), alone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grammars_bias_penalties_n_and_stop_arrays_hold() {
    let engine = tiny_engine();
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let client = reqwest::Client::new();
    // A random model constrained by a regex writes only what matches it.
    let rx = "(yes|no), [0-9]{1,3} (apples|pears)";
    let re = fancy_regex::Regex::new(&format!("^(?:{rx})$")).unwrap();
    for seed in 0..5 {
        let r = post(
            &client,
            &server.at("/generate"),
            &json!({"inputs": "Fruit?", "parameters": {"max_new_tokens": 40, "do_sample": true,
                    "seed": seed, "grammar": {"type": "regex", "value": rx}}}),
        )
        .await;
        let text = r["generated_text"].as_str().unwrap();
        assert!(re.is_match(text).unwrap(), "seed {seed}: {text:?}");
    }
    // A JSON schema of closed choices: the answer parses and matches.
    let schema = json!({"type": "object", "properties": {
        "ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}, "c": {"enum": ["red", "blue"]}},
        "required": ["ok", "n", "c"], "additionalProperties": false});
    for seed in 0..5 {
        let r = post(
            &client,
            &server.at("/v1/chat/completions"),
            &json!({"messages": [{"role": "user", "content": "JSON please"}], "seed": seed,
                    "max_tokens": 60, "response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": schema, "strict": true}}}),
        )
        .await;
        let text = r["choices"][0]["message"]["content"].as_str().unwrap();
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(v["ok"].is_boolean() && [1, 2, 3].contains(&v["n"].as_i64().unwrap()));
        assert!(["red", "blue"].contains(&v["c"].as_str().unwrap()), "{v}");
    }
    // logit_bias forces a token; -100 bans the greedy choice.
    let greedy = |extra: Value| {
        let mut body = json!({"prompt": "Hello", "max_tokens": 3, "temperature": 0,
                              "ignore_eos": true, "logprobs": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let first_token = |v: &Value| v["choices"][0]["logprobs"]["tokens"][0].clone();
    let plain = post(&client, &server.at("/v1/completions"), &greedy(json!({}))).await;
    let first_logprob = |v: &Value| {
        v["choices"][0]["logprobs"]["token_logprobs"][0]
            .as_f64()
            .unwrap()
    };
    let forced_id = engine.tokenizer.encode("llama", false, false)[0];
    let forced = post(
        &client,
        &server.at("/v1/completions"),
        &greedy(json!({"logit_bias": {forced_id.to_string(): 100}})),
    )
    .await;
    let forced_text = engine.tokenizer.decode(&[forced_id], false);
    assert_eq!(first_token(&forced), json!(forced_text));
    let tgi_greedy = post(
        &client,
        &server.at("/generate"),
        &json!({"inputs": "Hello", "parameters": {"max_new_tokens": 1, "details": true}}),
    )
    .await;
    let banned_id = tgi_greedy["details"]["tokens"][0]["id"].as_u64().unwrap();
    let banned = post(
        &client,
        &server.at("/v1/completions"),
        &greedy(json!({"logit_bias": {banned_id.to_string(): -100}})),
    )
    .await;
    // Log-probabilities are the model's, before the bias: the banned greedy
    // token was the likeliest, so the one picked instead is less likely.
    assert!(first_logprob(&banned) < first_logprob(&plain));
    // The penalties: a penalised greedy run repeats fewer tokens.
    let repeats = |v: &Value| {
        let toks: Vec<String> = v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        toks.len() - toks.iter().collect::<std::collections::HashSet<_>>().len()
    };
    let long = |extra: Value| {
        let mut b = greedy(extra);
        b["max_tokens"] = json!(40);
        b
    };
    let free = post(&client, &server.at("/v1/completions"), &long(json!({}))).await;
    let penalised = post(
        &client,
        &server.at("/v1/completions"),
        &long(json!({"frequency_penalty": 2.0, "presence_penalty": 2.0})),
    )
    .await;
    assert!(
        repeats(&penalised) < repeats(&free).max(1),
        "penalised {} vs free {}",
        repeats(&penalised),
        repeats(&free)
    );
    // n = 3: three choices, indexes 0..3; greedy choices are equal.
    let r = post(
        &client,
        &server.at("/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "Hi"}], "n": 3, "temperature": 0,
                "max_tokens": 5}),
    )
    .await;
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(choices
        .iter()
        .all(|c| c["message"] == choices[0]["message"]));
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= 3);
    // best_of: the returned choice is the likeliest of those generated.
    let r = post(
        &client,
        &server.at("/v1/completions"),
        &json!({"prompt": "Hi", "best_of": 3, "max_tokens": 5, "seed": 1}),
    )
    .await;
    assert_eq!(r["choices"].as_array().unwrap().len(), 1);
    // stop arrays: the text ends before the first stop string met.
    let free_text = post(
        &client,
        &server.at("/generate"),
        &json!({"inputs": "Hello", "parameters": {"max_new_tokens": 30, "ignore_eos": true}}),
    )
    .await["generated_text"]
        .as_str()
        .unwrap()
        .to_string();
    let chars: Vec<char> = free_text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let r = post(
        &client,
        &server.at("/v1/completions"),
        &json!({"prompt": "Hello", "max_tokens": 30, "temperature": 0, "ignore_eos": true,
                "stop": ["@@never@@", stop]}),
    )
    .await;
    let cut = r["choices"][0]["text"].as_str().unwrap();
    assert!(
        free_text.starts_with(cut) && cut.len() < free_text.len(),
        "{cut:?} of {free_text:?}"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
}
