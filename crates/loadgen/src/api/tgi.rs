//! Text Generation Inference's `/generate`, `/generate_stream` and
//! `/tokenize`.

use serde::Deserialize;

use super::{error_text, json_body, BodyInfo, EventInfo, RequestParams};
use crate::error::{LoadgenError, Result};
use crate::workload::Prompt;

pub(super) fn body(prompt: &Prompt, p: &RequestParams) -> serde_json::Value {
    // `details` makes TGI report `generated_tokens` (the study sent it too).
    let mut params = serde_json::json!({
        "max_new_tokens": prompt.max_new_tokens,
        "details": true,
    });
    // TGI rejects temperature 0: greedy is "no temperature, do_sample false".
    match p.temperature {
        Some(t) if t > 0.0 => {
            params["temperature"] = t.into();
            params["do_sample"] = true.into();
        }
        _ => params["do_sample"] = false.into(),
    }
    if p.ignore_eos {
        // Not in TGI's schema (TGI ignores unknown fields); servebench's server
        // and TGI-compatible servers that support it honour it.
        params["ignore_eos"] = true.into();
    }
    serde_json::json!({ "inputs": prompt.text, "parameters": params })
}

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(default)]
    token: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    generated_text: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    details: Option<Details>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    generated_tokens: Option<u32>,
}

pub(super) fn parse_event(data: &str) -> Result<EventInfo, String> {
    let ev: StreamEvent = serde_json::from_str(data).map_err(|e| format!("{e} in `{data}`"))?;
    Ok(EventInfo {
        // A token event counts even when its text is empty (METRICS.md).
        tokens: u32::from(ev.token.is_some()),
        reported_tokens: ev.details.and_then(|d| d.generated_tokens),
        finished: ev.generated_text.is_some(),
        error: ev.error.as_ref().map(error_text),
    })
}

#[derive(Deserialize)]
struct Generated {
    #[allow(dead_code)] // presence is the validity check
    generated_text: String,
    #[serde(default)]
    details: Option<Details>,
}

pub(super) fn parse_body(body: &[u8]) -> Result<BodyInfo, String> {
    let v = json_body(body)?;
    // TGI's `/` route answers a one-element array; `/generate` an object.
    let one = match v {
        serde_json::Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    let g: Generated =
        serde_json::from_value(one).map_err(|e| format!("not a TGI response: {e}"))?;
    Ok(BodyInfo {
        reported_tokens: g.details.and_then(|d| d.generated_tokens),
    })
}

#[derive(Deserialize)]
struct TokenSpan {
    stop: usize,
}

/// Asks a TGI server (`POST {base}/tokenize {"inputs": text}`) how it splits
/// `text`; returns the byte offset where each token ends.
pub async fn tokenize_offsets(
    http: &reqwest::Client,
    base_url: &str,
    text: &str,
) -> Result<Vec<usize>> {
    let route = format!("{}/tokenize", base_url.trim_end_matches('/'));
    let server = |why: String| LoadgenError::Server {
        route: route.clone(),
        why,
    };
    let resp = http
        .post(&route)
        .json(&serde_json::json!({ "inputs": text }))
        .send()
        .await
        .map_err(|e| server(e.to_string()))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| server(e.to_string()))?;
    if !status.is_success() {
        return Err(server(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let spans: Vec<TokenSpan> = serde_json::from_slice(&bytes)
        .map_err(|e| server(format!("expected [{{id,text,start,stop}}]: {e}")))?;
    Ok(spans.into_iter().map(|s| s.stop).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_events_count_even_when_empty() {
        let ev = parse_event(r#"{"index":1,"token":{"id":5,"text":"","logprob":-0.1,"special":false},"generated_text":null,"details":null}"#).unwrap();
        assert_eq!(ev.tokens, 1);
        assert!(!ev.finished);
        let last = parse_event(r#"{"index":3,"token":{"id":2,"text":"!","special":false},"generated_text":"ab!","details":{"finish_reason":"length","generated_tokens":3,"seed":null}}"#).unwrap();
        assert_eq!(
            (last.tokens, last.reported_tokens, last.finished),
            (1, Some(3), true)
        );
    }

    #[test]
    fn errors_inside_the_stream_are_reported() {
        let ev = parse_event(r#"{"error":"Request failed during generation: out of memory","error_type":"generation"}"#).unwrap();
        assert_eq!(
            ev.error.as_deref(),
            Some("Request failed during generation: out of memory")
        );
        assert_eq!(ev.tokens, 0);
        assert!(parse_event("{not json").is_err());
    }

    #[test]
    fn bodies_give_generated_tokens() {
        let b = parse_body(br#"{"generated_text":"x","details":{"generated_tokens":50}}"#).unwrap();
        assert_eq!(b.reported_tokens, Some(50));
        let arr =
            parse_body(br#"[{"generated_text":"x","details":{"generated_tokens":7}}]"#).unwrap();
        assert_eq!(arr.reported_tokens, Some(7));
        assert!(parse_body(br#"{"error":"Input validation error"}"#).is_err());
        assert!(parse_body(br#"{"text":"x"}"#).is_err());
    }

    #[test]
    fn greedy_means_no_temperature() {
        let p = Prompt::new("hi", 50);
        let mut rp = RequestParams {
            stream: true,
            model_name: None,
            ignore_eos: false,
            temperature: Some(0.0),
            extra_body: None,
        };
        let b = body(&p, &rp);
        assert_eq!(b["parameters"]["do_sample"], false);
        assert!(b["parameters"].get("temperature").is_none());
        assert_eq!(b["parameters"]["max_new_tokens"], 50);
        rp.temperature = Some(0.7);
        assert_eq!(body(&p, &rp)["parameters"]["temperature"], 0.7);
    }
}
