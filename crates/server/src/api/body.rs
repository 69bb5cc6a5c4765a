//! Reading a JSON request body with the server's own errors (axum's
//! extractors answer in plain text, which neither API's clients expect).

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::ApiError;

/// Parses `body` as JSON of type `T`: 415 without a JSON content type,
/// 413 past `limit` bytes, 400 for broken JSON, a validation error for
/// JSON of the wrong shape (naming the field, as serde reports it).
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !(essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json"))
    {
        let shown = if content_type.is_empty() {
            "none".to_string()
        } else {
            format!("`{content_type}`")
        };
        return Err(ApiError::UnsupportedMediaType(shown));
    }
    let bytes = read_bytes(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        Category::Data => ApiError::Validation {
            message: format!("invalid request: {e}"),
            param: None,
        },
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadBody(format!("the body is not valid JSON: {e}"))
        }
    })
}

/// The whole body: 413 past `limit` bytes.
pub async fn read_bytes(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.downcast_ref::<LengthLimitError>().is_some() {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadBody(format!("could not read the request body: {inner}"))
        }
    })
}
