//! Log-probabilities in OpenAI's two shapes: chat's `logprobs.content`
//! entries (token, logprob, bytes, top alternatives) and the completions
//! route's parallel arrays (`tokens`, `token_logprobs`, `top_logprobs`,
//! `text_offset`). The values are the batcher's, taken before penalties.

use serde::{Deserialize, Serialize};
use servebench_engine::tokenizer::Tokenizer;
use utoipa::ToSchema;

use crate::infer::GeneratedToken;

/// One alternative token (chat).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's UTF-8 bytes (a token may hold part of a character).
    pub bytes: Vec<u8>,
}

/// One generated token (chat).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    /// The `top_logprobs` most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// A chat choice's `logprobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

/// A completion choice's `logprobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    /// Null for the first prompt token (`echo`), which has no context.
    pub token_logprobs: Vec<Option<f32>>,
    /// Token text to log-probability, most likely first; null where
    /// `token_logprobs` is.
    #[schema(value_type = Vec<Option<Object>>)]
    pub top_logprobs: Vec<Option<serde_json::Map<String, serde_json::Value>>>,
    /// Byte offset of each token in the choice's text.
    pub text_offset: Vec<usize>,
}

fn bytes_of(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let mut b = Vec::new();
    tok.token_bytes(id, false, &mut b);
    b
}

/// Whether a generated token is listed: end-of-generation tokens are not
/// part of the answer's text, so OpenAI lists none.
pub fn listed(t: &GeneratedToken) -> bool {
    !t.special && t.logprob.is_some()
}

/// Chat entries for `tokens`.
pub fn chat(tok: &Tokenizer, tokens: &[GeneratedToken]) -> ChatLogprobs {
    let content = tokens
        .iter()
        .filter(|t| listed(t))
        .map(|t| {
            let bytes = bytes_of(tok, t.id);
            TokenLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob: t.logprob.unwrap_or(f32::NEG_INFINITY),
                bytes,
                top_logprobs: t
                    .top
                    .iter()
                    .map(|&(id, logprob)| {
                        let bytes = bytes_of(tok, id);
                        TopLogprob {
                            token: String::from_utf8_lossy(&bytes).into_owned(),
                            logprob,
                            bytes,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    ChatLogprobs { content }
}

/// Builds a completion choice's arrays token by token.
#[derive(Debug, Default)]
pub struct CompletionLogprobsBuilder {
    out: CompletionLogprobs,
    /// Bytes of text before the next token.
    offset: usize,
}

impl CompletionLogprobsBuilder {
    /// Starts at byte `offset` of the choice's text.
    pub fn at(offset: usize) -> Self {
        Self {
            out: CompletionLogprobs::default(),
            offset,
        }
    }

    fn push(&mut self, tok: &Tokenizer, id: u32, logprob: Option<f32>, top: Option<&[(u32, f32)]>) {
        let bytes = bytes_of(tok, id);
        self.out
            .tokens
            .push(String::from_utf8_lossy(&bytes).into_owned());
        self.out.token_logprobs.push(logprob);
        self.out.top_logprobs.push(top.map(|top| {
            top.iter()
                .map(|&(id, lp)| {
                    let text = String::from_utf8_lossy(&bytes_of(tok, id)).into_owned();
                    (text, serde_json::json!(lp))
                })
                .collect()
        }));
        self.out.text_offset.push(self.offset);
        self.offset += bytes.len();
    }

    /// The prompt's tokens (`echo`): the first has no log-probability, the
    /// others list themselves only (alternatives are computed for generated
    /// tokens).
    pub fn prompt(&mut self, tok: &Tokenizer, ids: &[u32], logprobs: &[f32]) {
        for (i, &id) in ids.iter().enumerate() {
            let lp = i.checked_sub(1).and_then(|i| logprobs.get(i).copied());
            let own = lp.map(|lp| [(id, lp)]);
            self.push(tok, id, lp, own.as_ref().map(|o| &o[..]));
        }
    }

    /// A generated token (end-of-generation tokens are skipped).
    pub fn token(&mut self, tok: &Tokenizer, t: &GeneratedToken) {
        if listed(t) {
            self.push(tok, t.id, t.logprob, Some(&t.top));
        }
    }

    /// The arrays so far, leaving the builder empty at the same offset.
    pub fn take(&mut self) -> CompletionLogprobs {
        std::mem::take(&mut self.out)
    }
}
