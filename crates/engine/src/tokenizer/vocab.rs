//! The vocabulary as GGUF stores it: token texts, their types and scores,
//! and the special ids.

use std::collections::HashMap;

use crate::error::{EngineError, Result};
use crate::gguf::{GgufFile, Value};

/// GGUF token types (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_id(id: i64) -> Self {
        match id {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }

    /// GGUF's number for this type.
    pub fn id(self) -> i32 {
        match self {
            Self::Normal => 1,
            Self::Unknown => 2,
            Self::Control => 3,
            Self::UserDefined => 4,
            Self::Unused => 5,
            Self::Byte => 6,
        }
    }
}

/// Token texts and attributes.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub texts: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    pub ids: HashMap<String, u32>,
}

impl Vocab {
    /// Reads `tokenizer.ggml.tokens`, `.token_type` and `.scores`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let key = "tokenizer.ggml.tokens";
        let texts = file
            .opt_array(key)?
            .ok_or_else(|| EngineError::metadata(key, "missing"))?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(EngineError::metadata(key, "entries must be strings")),
            })
            .collect::<Result<Vec<_>>>()?;
        let n = texts.len();
        let types = match file.opt_array("tokenizer.ggml.token_type")? {
            Some(a) if a.len() == n => a
                .iter()
                .map(|v| v.to_i32().map(|i| TokenType::from_id(i as i64)))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| EngineError::metadata("tokenizer.ggml.token_type", e.to_string()))?,
            Some(a) => {
                return Err(EngineError::metadata(
                    "tokenizer.ggml.token_type",
                    format!("{} entries for {n} tokens", a.len()),
                ))
            }
            None => vec![TokenType::Normal; n],
        };
        let scores = match file.opt_array("tokenizer.ggml.scores")? {
            Some(a) if a.len() == n => a
                .iter()
                .map(|v| v.to_f32())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| EngineError::metadata("tokenizer.ggml.scores", e.to_string()))?,
            Some(a) => {
                return Err(EngineError::metadata(
                    "tokenizer.ggml.scores",
                    format!("{} entries for {n} tokens", a.len()),
                ))
            }
            None => vec![0.0; n],
        };
        Ok(Self::new(texts, types, scores))
    }

    /// Builds the lookup table; the first of duplicate texts wins.
    pub fn new(texts: Vec<String>, types: Vec<TokenType>, scores: Vec<f32>) -> Self {
        let mut ids = HashMap::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            ids.entry(t.clone()).or_insert(i as u32);
        }
        Self {
            texts,
            types,
            scores,
            ids,
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The id of a token text.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}
