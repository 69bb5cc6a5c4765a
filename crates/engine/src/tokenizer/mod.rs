//! Text <-> token ids from the vocabulary stored in the GGUF file:
//! byte-level BPE (`gpt2`) with the named pre-tokenizer, or SentencePiece
//! style (`llama`); special tokens written in the text are recognised.

mod attributes;
mod bpe;
mod pretokenize;
mod special;
mod spm;
mod stream;
pub mod vocab;

pub use bpe::ByteMap;
pub use stream::StreamDecoder;
pub use vocab::{TokenType, Vocab};

use crate::error::{EngineError, Result};
use crate::gguf::{GgufFile, Value};
use bpe::Bpe;
use pretokenize::PreTokenizer;
use special::{Fragment, SpecialTokens};

enum Model {
    Bpe { bpe: Box<Bpe>, pre: PreTokenizer },
    Spm { add_space_prefix: bool },
}

/// A model's tokenizer.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    special: SpecialTokens,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
}

impl Tokenizer {
    /// Reads the tokenizer from GGUF metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let mut vocab = Vocab::from_gguf(file)?;
        let kind = file.str("tokenizer.ggml.model")?;
        let n_vocab = vocab.len();
        let id_key = |k: &str| -> Result<Option<u32>> {
            let key = format!("tokenizer.ggml.{k}");
            match file.opt_usize(&key)? {
                Some(id) if id >= n_vocab => Err(EngineError::metadata(
                    &key,
                    format!("token id {id} is outside the vocabulary of {n_vocab}"),
                )),
                other => Ok(other.map(|i| i as u32)),
            }
        };
        let (model, default_bos) = match kind {
            "gpt2" => {
                let merges = match file.opt_array("tokenizer.ggml.merges")? {
                    Some(a) => a
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s.clone()),
                            _ => Err(EngineError::metadata(
                                "tokenizer.ggml.merges",
                                "entries must be strings",
                            )),
                        })
                        .collect::<Result<Vec<_>>>()?,
                    None => {
                        return Err(EngineError::metadata(
                            "tokenizer.ggml.merges",
                            "missing (needed by gpt2 tokenizers)",
                        ))
                    }
                };
                let pre = PreTokenizer::named(file.opt_str("tokenizer.ggml.pre")?)?;
                let default_bos = pre.default_bos;
                (
                    Model::Bpe {
                        bpe: Box::new(Bpe::new(&vocab, &merges)?),
                        pre,
                    },
                    default_bos,
                )
            }
            "llama" => (
                Model::Spm {
                    add_space_prefix: file
                        .opt_bool("tokenizer.ggml.add_space_prefix")?
                        .unwrap_or(true),
                },
                true,
            ),
            other => {
                return Err(EngineError::metadata(
                    "tokenizer.ggml.model",
                    format!("`{other}` is not supported (gpt2, llama)"),
                ))
            }
        };
        let bos = id_key("bos_token_id")?;
        let eos = id_key("eos_token_id")?;
        let mut fim = [None; 6];
        for (id, keys) in fim.iter_mut().zip(attributes::FIM_KEYS) {
            for key in keys {
                *id = id_key(key)?.or(*id);
            }
        }
        let corrected = attributes::correct(
            &mut vocab,
            &attributes::Metadata {
                name: file.opt_str("general.name")?,
                arch: file.opt_str("general.architecture")?,
                pre: file.opt_str("tokenizer.ggml.pre")?,
                eos,
                eot: id_key("eot_token_id")?,
                eom: id_key("eom_token_id")?,
                fim,
            },
        );
        Ok(Self {
            special: SpecialTokens::new(&vocab, &corrected.strip),
            add_bos: file
                .opt_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(default_bos)
                && bos.is_some(),
            add_eos: file
                .opt_bool("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false)
                && eos.is_some(),
            vocab,
            model,
            bos,
            eos,
            eog: corrected.eog,
        })
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS where the model asks
    /// for them; `parse_special` lets control tokens written in the text
    /// (`<|im_start|>`) become those tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for frag in self.special.partition(&self.vocab, text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                // llama.cpp makes no fragment of empty text: no space prefix either.
                Fragment::Text("") => {}
                Fragment::Text(s) => {
                    match &self.model {
                        Model::Bpe { bpe, pre } => {
                            for piece in pre.split(s) {
                                bpe.encode_piece(&self.vocab, piece, pre.ignore_merges, &mut out);
                            }
                        }
                        Model::Spm { add_space_prefix } => {
                            let mut t = String::with_capacity(s.len() + 3);
                            if *add_space_prefix && prev_special {
                                t.push(spm::SPACE);
                            }
                            t.extend(s.chars().map(|c| if c == ' ' { spm::SPACE } else { c }));
                            spm::encode(&self.vocab, &t, &mut out);
                        }
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// The bytes token `id` stands for; control tokens give their text only
    /// when `render_special` (they are markup, not output).
    pub fn token_bytes(&self, id: u32, render_special: bool, out: &mut Vec<u8>) {
        let Some(text) = self.vocab.texts.get(id as usize) else {
            return;
        };
        match self.vocab.types[id as usize] {
            TokenType::Control | TokenType::Unknown => {
                if render_special {
                    out.extend_from_slice(text.as_bytes());
                }
            }
            TokenType::UserDefined => out.extend_from_slice(text.as_bytes()),
            TokenType::Unused => {}
            TokenType::Byte => match spm::byte_of(text) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(text.as_bytes()),
            },
            TokenType::Normal => match &self.model {
                Model::Bpe { bpe, .. } => bpe.decode_text(text, out),
                Model::Spm { .. } => {
                    for c in text.chars() {
                        let c = if c == spm::SPACE { ' ' } else { c };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            },
        }
    }

    /// Text of a whole id sequence (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.token_bytes(id, render_special, &mut bytes);
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if let Model::Spm {
            add_space_prefix: true,
        } = self.model
        {
            if text.starts_with(' ') {
                text.remove(0);
            }
        }
        text
    }

    /// Whether generation should stop at `id`.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Every token that ends generation: EOS, EOT and EOM, and what
    /// llama.cpp ends on by text (`<|im_end|>`, FIM padding, ...).
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Whether encoding with `add_special` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The text of a token as stored (for BOS/EOS in chat templates).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(|s| s.as_str())
    }

    /// `gpt2` or `llama`, and the pre-tokenizer name for `gpt2`.
    pub fn describe(&self) -> String {
        match &self.model {
            Model::Bpe { pre, .. } => format!("gpt2 (pre-tokenizer {})", pre.name()),
            Model::Spm { .. } => "llama (sentencepiece)".to_string(),
        }
    }
}
