//! The OpenAPI document of every route, derived from the same types the
//! handlers parse and return, so it cannot drift from them.

use axum::Json;
use utoipa::OpenApi;

use super::{openai, sagemaker, tgi};
use crate::error::TgiErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "servebench",
        description = "TGI- and OpenAI-compatible inference server"
    ),
    paths(
        tgi::compat_generate,
        tgi::generate,
        tgi::generate_stream,
        tgi::tokenize,
        tgi::info,
        tgi::health,
        tgi::metrics,
        openai::completions,
        openai::chat_completions,
        openai::models,
        sagemaker::ping,
        sagemaker::invocations,
    ),
    components(schemas(
        TgiErrorBody,
        tgi::GenerateParameters,
        tgi::GenerateRequest,
        tgi::CompatGenerateRequest,
        tgi::GenerateResponse,
        tgi::Details,
        tgi::Token,
        tgi::PrefillToken,
        tgi::StreamResponse,
        tgi::StreamDetails,
        tgi::SimpleToken,
        tgi::Info,
        openai::CompletionRequest,
        openai::ChatRequest,
        openai::Completion,
        openai::ChatCompletion,
        openai::ModelList,
    ))
)]
pub struct ApiDoc;

/// `GET /api-doc/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
