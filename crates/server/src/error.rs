//! Every way a request can fail, mapped to an HTTP status in exactly one
//! place, and written in each API's own error shape: TGI's
//! `{"error", "error_type"}` or OpenAI's `{"error": {"message", "type",
//! "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

/// A failed request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Parameters outside what the server accepts (TGI's validation rules).
    #[error("{message}")]
    Validation {
        message: String,
        /// The offending field, for OpenAI's `param`.
        param: Option<&'static str>,
    },
    /// The body is not JSON, or not JSON of the expected shape.
    #[error("{0}")]
    BadBody(String),
    #[error("expected `Content-Type: application/json`, got {0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than the server's limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("Model is overloaded")]
    Overloaded,
    #[error("missing or wrong API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The model failed while generating.
    #[error("{0}")]
    Generation(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl ApiError {
    /// A validation error about `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            message: message.into(),
            param: Some(param),
        }
    }

    /// The HTTP status; OpenAI routes answer 400 where TGI answers 422.
    pub fn status(&self, api: Api) -> StatusCode {
        match (self, api) {
            (Self::Validation { .. }, Api::Tgi) => StatusCode::UNPROCESSABLE_ENTITY,
            (Self::Validation { .. }, Api::OpenAi) => StatusCode::BAD_REQUEST,
            (Self::BadBody(_), _) => StatusCode::BAD_REQUEST,
            (Self::UnsupportedMediaType(_), _) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            (Self::PayloadTooLarge(_), _) => StatusCode::PAYLOAD_TOO_LARGE,
            (Self::Overloaded, _) => StatusCode::TOO_MANY_REQUESTS,
            (Self::Unauthorized, _) => StatusCode::UNAUTHORIZED,
            (Self::NotFound(_), _) => StatusCode::NOT_FOUND,
            (Self::MethodNotAllowed, _) => StatusCode::METHOD_NOT_ALLOWED,
            // TGI answers generation failures with 424 Failed Dependency.
            (Self::Generation(_), Api::Tgi) => StatusCode::FAILED_DEPENDENCY,
            (Self::Generation(_), Api::OpenAi) => StatusCode::INTERNAL_SERVER_ERROR,
            (Self::ShuttingDown, _) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// TGI's `error_type`.
    pub fn tgi_type(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation",
            Self::BadBody(_) | Self::UnsupportedMediaType(_) | Self::PayloadTooLarge(_) => {
                "bad_request"
            }
            Self::Overloaded => "overloaded",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) | Self::MethodNotAllowed => "not_found",
            Self::Generation(_) => "generation",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// OpenAI's error `type`.
    fn openai_type(&self) -> &'static str {
        match self {
            Self::Validation { .. }
            | Self::BadBody(_)
            | Self::UnsupportedMediaType(_)
            | Self::PayloadTooLarge(_)
            | Self::MethodNotAllowed => "invalid_request_error",
            Self::Overloaded => "rate_limit_error",
            Self::Unauthorized => "authentication_error",
            Self::NotFound(_) => "not_found_error",
            Self::Generation(_) | Self::ShuttingDown => "server_error",
        }
    }

    /// TGI's error body.
    pub fn tgi_body(&self) -> TgiErrorBody {
        TgiErrorBody {
            error: self.to_string(),
            error_type: self.tgi_type().to_string(),
        }
    }

    /// OpenAI's error body.
    pub fn openai_body(&self) -> serde_json::Value {
        let param = match self {
            Self::Validation { param, .. } => *param,
            _ => None,
        };
        json!({"error": {
            "message": self.to_string(),
            "type": self.openai_type(),
            "param": param,
            "code": self.status(Api::OpenAi).as_u16().to_string(),
        }})
    }

    /// The response in `api`'s shape.
    pub fn into_response_for(self, api: Api) -> Response {
        let status = self.status(api);
        match api {
            Api::Tgi => (status, Json(self.tgi_body())).into_response(),
            Api::OpenAi => (status, Json(self.openai_body())).into_response(),
        }
    }
}

/// Which API's conventions a route follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Tgi,
    OpenAi,
}

impl Api {
    /// OpenAI's routes live under `/v1/`.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/") {
            Self::OpenAi
        } else {
            Self::Tgi
        }
    }
}

/// TGI's error JSON.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TgiErrorBody {
    pub error: String,
    pub error_type: String,
}

/// An error answered in TGI's shape.
#[derive(Debug)]
pub struct TgiError(pub ApiError);

/// An error answered in OpenAI's shape.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl From<ApiError> for TgiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for TgiError {
    fn into_response(self) -> Response {
        self.0.into_response_for(Api::Tgi)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.into_response_for(Api::OpenAi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_is_422_for_tgi_and_400_for_openai() {
        let e = ApiError::invalid("top_p", "`top_p` must be > 0.0 and < 1.0");
        assert_eq!(e.status(Api::Tgi), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.status(Api::OpenAi), StatusCode::BAD_REQUEST);
        assert_eq!(e.tgi_body().error_type, "validation");
        let o = e.openai_body();
        assert_eq!(o["error"]["param"], "top_p");
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(ApiError::Overloaded.status(Api::Tgi), 429);
        assert_eq!(Api::of_path("/v1/completions"), Api::OpenAi);
        assert_eq!(Api::of_path("/generate"), Api::Tgi);
    }
}
