//! The SageMaker container contract, as the Hugging Face LLM container (TGI's
//! `router/src/sagemaker.rs`) serves it: `GET /ping` for SageMaker's health
//! checks and `POST /invocations`, which takes any of the three request
//! shapes and answers exactly as the route that owns the shape does.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::body::read_bytes;
use super::{openai, tgi, AppState};
use crate::error::Api;

/// Which route a `/invocations` body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `inputs` + `parameters` (+ `stream`): TGI's `/` route.
    Generate,
    /// `messages`: OpenAI's `/v1/chat/completions`.
    Chat,
    /// `prompt`: OpenAI's `/v1/completions`.
    Completion,
}

impl Shape {
    /// TGI tries its request types in this order (an untagged enum): a body
    /// with `inputs` is a generate request whatever else it carries. Bodies
    /// that are not JSON objects, or carry none of the three keys, go to the
    /// generate route, whose errors (TGI's 400/422) name what is wrong.
    fn of(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
            return Self::Generate;
        };
        if fields.contains_key("inputs") {
            Self::Generate
        } else if fields.contains_key("messages") {
            Self::Chat
        } else if fields.contains_key("prompt") {
            Self::Completion
        } else {
            Self::Generate
        }
    }
}

/// SageMaker's health check: 200 once the model serves, 503 before or after.
#[utoipa::path(get, path = "/ping",
    responses((status = 200), (status = 503, body = crate::error::TgiErrorBody)))]
pub async fn ping(state: State<AppState>) -> Response {
    tgi::health(state).await
}

/// SageMaker's inference route: a TGI body (`inputs`, `parameters`,
/// `stream`), an OpenAI chat body (`messages`) or an OpenAI completions body
/// (`prompt`), answered as `/`, `/v1/chat/completions` or `/v1/completions`.
#[utoipa::path(post, path = "/invocations", request_body = tgi::CompatGenerateRequest,
    responses((status = 200, body = Vec<tgi::GenerateResponse>),
              (status = 422, body = crate::error::TgiErrorBody),
              (status = 429, body = crate::error::TgiErrorBody)))]
pub async fn invocations(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let limit = state.validator.config().payload_limit;
    let bytes = match read_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => return super::counted(e).into_response_for(Api::Tgi),
    };
    let body = Body::from(bytes.clone());
    match Shape::of(&bytes) {
        Shape::Generate => tgi::compat_generate(state, headers, body)
            .await
            .into_response(),
        Shape::Chat => openai::chat_completions(state, headers, body)
            .await
            .into_response(),
        Shape::Completion => openai::completions(state, headers, body)
            .await
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_tgis_order() {
        assert_eq!(
            Shape::of(br#"{"inputs":"x","stream":true}"#),
            Shape::Generate
        );
        assert_eq!(
            Shape::of(br#"{"inputs":"x","messages":[]}"#),
            Shape::Generate
        );
        assert_eq!(Shape::of(br#"{"messages":[]}"#), Shape::Chat);
        assert_eq!(Shape::of(br#"{"prompt":"x"}"#), Shape::Completion);
        assert_eq!(Shape::of(b"{not json"), Shape::Generate);
        assert_eq!(Shape::of(b"[1]"), Shape::Generate);
    }
}
