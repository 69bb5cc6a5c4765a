//! Constrained decoding (structured output) with llguidance: OpenAI's
//! `response_format` (JSON mode, JSON schema), TGI's `grammar` (JSON
//! schema, regex) and forced tool calls. A grammar is compiled once per
//! request at validation, off the model thread; in the batch each
//! constrained sequence bans the tokens its grammar does not allow before
//! it picks, in the same parallel loop that picks every sequence's token,
//! so unconstrained sequences pay nothing.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use servebench_engine::tokenizer::{TokenType, Tokenizer};
use servebench_engine::Engine;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's JSON mode).
    JsonObject,
    /// A JSON document valid against this JSON schema.
    JsonSchema(Value),
    /// Text matching this regular expression (Rust `regex` syntax, whole match).
    Regex(String),
}

/// Why a grammar could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GrammarError(String);

/// The tokenizer as llguidance sees it: every token's bytes in a trie
/// (control tokens behind llguidance's special-token marker, so no grammar
/// can produce them as text) and our own encoder for text it needs as
/// tokens.
struct TokEnv {
    trie: TokTrie,
    engine: Arc<Engine>,
}

impl TokenizerEnv for TokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        let text = String::from_utf8_lossy(s);
        self.engine.tokenizer.encode(&text, false, false)
    }
}

fn token_words(tok: &Tokenizer) -> Vec<Vec<u8>> {
    let vocab = tok.vocab();
    (0..vocab.len() as u32)
        .map(|id| match vocab.types[id as usize] {
            TokenType::Normal | TokenType::Byte | TokenType::UserDefined => {
                let mut b = Vec::new();
                tok.token_bytes(id, false, &mut b);
                b
            }
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                b.extend_from_slice(vocab.texts[id as usize].as_bytes());
                b
            }
        })
        .collect()
}

/// Compiles grammars for one model's tokenizer.
pub struct Grammars {
    factory: ParserFactory,
}

/// JSON layout the grammar enforces: compact, as Python's `json.dumps`
/// writes it. Free whitespace lets a small model pad forever instead of
/// closing the document.
fn compact(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(
            || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

impl Grammars {
    /// Builds the token trie of `engine`'s vocabulary (once per server).
    pub fn new(engine: Arc<Engine>) -> Result<Self, GrammarError> {
        let tok = &engine.tokenizer;
        let eos = tok
            .eos()
            .or_else(|| tok.eog_ids().first().copied())
            .ok_or_else(|| GrammarError("the model has no end-of-sequence token".into()))?;
        let words = token_words(tok);
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: llguidance::toktrie::TokEnv = Arc::new(TokEnv { trie, engine });
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError(e.to_string()))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// A fresh constraint for one sequence; the error says what is wrong
    /// with the schema or the regex.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint, GrammarError> {
        let top = match grammar {
            Grammar::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(json!({"type": "object"})))
            }
            Grammar::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(GrammarError("a JSON schema is an object".into()));
                }
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            Grammar::Regex(rx) => {
                // llguidance's regex syntax is a subset of Rust's; a pattern
                // Rust's own parser rejects is reported in its words.
                regex_syntax::Parser::new()
                    .parse(rx)
                    .map_err(|e| GrammarError(format!("invalid regex: {e}")))?;
                TopLevelGrammar::from_regex(rx)
            }
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| GrammarError(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError(e));
        }
        Ok(Constraint { matcher })
    }
}

/// One sequence's grammar state.
pub struct Constraint {
    matcher: Matcher,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
        }
    }
}

impl Constraint {
    /// Bans every token the grammar does not allow next; once the grammar
    /// is complete (or broken) only end-of-sequence is allowed.
    pub fn mask(&mut self, logits: &mut [f32]) {
        match self.matcher.compute_mask_or_eos() {
            Ok(allowed) => {
                for (id, l) in logits.iter_mut().enumerate() {
                    if !allowed.is_allowed(id as u32) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            Err(_) => {
                // Broken state (cannot happen for tokens the mask allowed):
                // end the sequence rather than emit unconstrained text.
                let eos = self.eos();
                for (id, l) in logits.iter_mut().enumerate() {
                    if id as u32 != eos {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }

    fn eos(&self) -> u32 {
        self.matcher
            .tok_env()
            .map_or(0, |env| env.tok_trie().eos_token())
    }

    /// Advances past the chosen token.
    pub fn commit(&mut self, id: u32) {
        if !self.matcher.is_stopped() {
            // An error leaves the matcher stopped: only EOS is allowed next.
            let _ = self.matcher.consume_token(id);
        }
    }
}
