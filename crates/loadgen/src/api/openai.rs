//! OpenAI's `/v1/completions` and `/v1/chat/completions` (as served by vLLM,
//! llama.cpp's llama-server, TGI's Messages API and servebench).

use serde::Deserialize;

use super::{error_text, json_body, Api, BodyInfo, EventInfo, RequestParams};
use crate::workload::Prompt;

pub(super) fn body(api: Api, prompt: &Prompt, p: &RequestParams) -> serde_json::Value {
    let mut b = serde_json::json!({
        "max_tokens": prompt.max_new_tokens,
        "stream": p.stream,
        // OpenAI's default temperature is 1; a benchmark wants greedy unless told.
        "temperature": p.temperature.unwrap_or(0.0),
    });
    if let Some(m) = &p.model_name {
        b["model"] = m.as_str().into();
    }
    if api == Api::OpenaiChat {
        b["messages"] = serde_json::json!([{ "role": "user", "content": prompt.text }]);
    } else {
        b["prompt"] = prompt.text.as_str().into();
    }
    if p.stream {
        // Without it a stream carries no token count (METRICS.md: server counts first).
        b["stream_options"] = serde_json::json!({ "include_usage": true });
    }
    if p.ignore_eos {
        b["ignore_eos"] = true.into();
    }
    b
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Logprobs>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

/// Completions give `tokens: [...]`, chat gives `content: [...]`: one entry
/// per generated token, the only per-chunk token count OpenAI streams carry.
#[derive(Deserialize)]
struct Logprobs {
    #[serde(default)]
    tokens: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    content: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    completion_tokens: Option<u32>,
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|t| !t.is_empty())
}

fn choice_tokens(c: &Choice) -> u32 {
    let listed = c
        .logprobs
        .as_ref()
        .and_then(|l| l.tokens.as_ref().or(l.content.as_ref()))
        .map_or(0, Vec::len);
    if listed > 0 {
        return u32::try_from(listed).unwrap_or(u32::MAX);
    }
    // An OpenAI chunk with empty text cannot be told from a keep-alive or a
    // role-only chunk, so only non-empty text counts as a token.
    let text = non_empty(&c.text)
        || c.delta
            .as_ref()
            .is_some_and(|d| non_empty(&d.content) || non_empty(&d.reasoning_content));
    u32::from(text)
}

pub(super) fn parse_event(_api: Api, data: &str) -> Result<EventInfo, String> {
    if data.trim() == "[DONE]" {
        return Ok(EventInfo {
            finished: true,
            ..EventInfo::default()
        });
    }
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| format!("{e} in `{data}`"))?;
    Ok(EventInfo {
        tokens: chunk.choices.iter().map(choice_tokens).sum(),
        reported_tokens: chunk.usage.and_then(|u| u.completion_tokens),
        finished: chunk.choices.iter().any(|c| c.finish_reason.is_some()),
        error: chunk.error.as_ref().map(error_text),
    })
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    usage: Option<Usage>,
}

pub(super) fn parse_body(body: &[u8]) -> Result<BodyInfo, String> {
    let v = json_body(body)?;
    let c: Completion =
        serde_json::from_value(v).map_err(|e| format!("not an OpenAI response: {e}"))?;
    if c.choices.is_empty() {
        return Err("no choices in the response".into());
    }
    Ok(BodyInfo {
        reported_tokens: c.usage.and_then(|u| u.completion_tokens),
    })
}

#[derive(Deserialize)]
struct Models {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// The first model an OpenAI server lists (`GET {base}/v1/models`): what to
/// send as `model` when the user named none (vLLM rejects a wrong one).
pub async fn discover_model(
    http: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
) -> crate::Result<String> {
    let route = format!("{}/v1/models", base_url.trim_end_matches('/'));
    let server = |why: String| crate::LoadgenError::Server {
        route: route.clone(),
        why,
    };
    let mut req = http.get(&route);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| server(e.to_string()))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| server(e.to_string()))?;
    if !status.is_success() {
        return Err(server(format!("status {status}")));
    }
    let models: Models = serde_json::from_slice(&bytes).map_err(|e| server(e.to_string()))?;
    models
        .data
        .into_iter()
        .next()
        .map(|m| m.id)
        .ok_or_else(|| server("no models listed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> EventInfo {
        parse_event(Api::OpenaiChat, data).unwrap()
    }

    #[test]
    fn role_only_and_empty_chunks_carry_no_token() {
        assert_eq!(ev(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#).tokens, 0);
        assert_eq!(
            ev(r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#).tokens,
            0
        );
        assert_eq!(
            ev(r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#).tokens,
            1
        );
        assert_eq!(
            ev(r#"{"choices":[{"index":0,"text":" a","finish_reason":null}]}"#).tokens,
            1
        );
    }

    #[test]
    fn logprobs_give_tokens_per_chunk() {
        let e = ev(r#"{"choices":[{"text":"a b c","logprobs":{"tokens":["a"," b"," c"]}}]}"#);
        assert_eq!(e.tokens, 3);
    }

    #[test]
    fn usage_done_and_errors() {
        let u = ev(
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":50,"total_tokens":59}}"#,
        );
        assert_eq!(
            (u.tokens, u.reported_tokens, u.finished),
            (0, Some(50), false)
        );
        assert!(ev("[DONE]").finished);
        assert!(ev(r#"{"choices":[{"text":"","finish_reason":"length"}]}"#).finished);
        let e = ev(r#"{"error":{"message":"model overloaded","type":"server_error"}}"#);
        assert_eq!(e.error.as_deref(), Some("model overloaded"));
    }

    #[test]
    fn bodies_and_request_shape() {
        let b =
            parse_body(br#"{"choices":[{"text":"x"}],"usage":{"completion_tokens":12}}"#).unwrap();
        assert_eq!(b.reported_tokens, Some(12));
        assert!(parse_body(br#"{"choices":[]}"#).is_err());
        let p = RequestParams {
            stream: true,
            model_name: Some("m".into()),
            ignore_eos: true,
            temperature: None,
            extra_body: None,
        };
        let chat = body(Api::OpenaiChat, &Prompt::new("hello", 8), &p);
        assert_eq!(chat["messages"][0]["content"], "hello");
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert_eq!(chat["temperature"], 0.0);
        let comp = body(Api::OpenaiCompletions, &Prompt::new("hello", 8), &p);
        assert_eq!(
            (comp["prompt"].as_str(), comp["max_tokens"].as_u64()),
            (Some("hello"), Some(8))
        );
    }
}
