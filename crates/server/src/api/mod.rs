//! The HTTP surface: routes of both APIs, authentication, and what every
//! route shares (reading JSON bodies, streaming events).

mod body;
mod choices;
mod logprobs;
pub mod openai;
pub mod openapi;
pub mod sagemaker;
mod sse;
mod stop_text;
pub mod tgi;
pub mod tools;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::error::{Api, ApiError};
use crate::infer::Infer;
use crate::validation::Validator;

pub use body::read_json;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    pub infer: Infer,
    pub validator: Validator,
    /// Unix time the server started (OpenAI's `created` of the model).
    pub started_unix: u64,
}

impl AppState {
    /// Admits a request (429 when full) and counts it.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        crate::metrics::request();
        self.infer
            .admit()
            .inspect_err(|_| crate::metrics::failure("overloaded"))
    }
}

/// All routes. Inference routes sit behind the API key when one is set;
/// health, info, metrics and the OpenAPI document stay open.
pub fn router(state: AppState) -> Router {
    let inference = Router::new()
        .route("/", post(tgi::compat_generate))
        .route("/generate", post(tgi::generate))
        .route("/generate_stream", post(tgi::generate_stream))
        .route("/tokenize", post(tgi::tokenize))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/invocations", post(sagemaker::invocations))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(inference)
        .route("/health", get(tgi::health))
        .route("/ping", get(sagemaker::ping))
        .route("/info", get(tgi::info))
        .route("/metrics", get(tgi::metrics))
        .route("/api-doc/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = &state.validator.config().api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        next.run(request).await
    } else {
        let api = Api::of_path(request.uri().path());
        ApiError::Unauthorized.into_response_for(api)
    }
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_string();
    ApiError::NotFound(format!("no route {path}")).into_response_for(Api::of_path(&path))
}

async fn method_not_allowed(request: Request) -> Response {
    ApiError::MethodNotAllowed.into_response_for(Api::of_path(request.uri().path()))
}

/// Counts a failed request under TGI's label and passes the error on.
pub(crate) fn counted(e: ApiError) -> ApiError {
    match &e {
        ApiError::Validation { .. } | ApiError::BadBody(_) | ApiError::UnsupportedMediaType(_) => {
            crate::metrics::failure("validation")
        }
        ApiError::Generation(_) => crate::metrics::failure("generation"),
        _ => {}
    }
    e
}
