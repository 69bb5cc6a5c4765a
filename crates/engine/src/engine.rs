//! A loaded model ready to use: weights, tokenizer and chat template from
//! one GGUF file.

use std::path::Path;

use crate::chat_template::{ChatTemplate, Message};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::model::{Llama, LoadOptions};
use crate::tokenizer::Tokenizer;

/// Model, tokenizer and template.
pub struct Engine {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
}

impl Engine {
    /// Loads everything from `path`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads everything from `path`, converting weights as `options` say.
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let model = Llama::load_with(&file, options)?;
        if tokenizer.vocab().len() != model.config().vocab_size {
            return Err(EngineError::metadata(
                "tokenizer.ggml.tokens",
                format!(
                    "{} tokens but token_embd.weight has {} rows",
                    tokenizer.vocab().len(),
                    model.config().vocab_size
                ),
            ));
        }
        let chat_template = match file.opt_str("tokenizer.chat_template")? {
            Some(src) => {
                let text = |id: Option<u32>| {
                    id.and_then(|i| tokenizer.token_text(i))
                        .unwrap_or("")
                        .to_string()
                };
                Some(ChatTemplate::new(
                    src,
                    &text(tokenizer.bos()),
                    &text(tokenizer.eos()),
                )?)
            }
            None => None,
        };
        Ok(Self {
            model,
            tokenizer,
            chat_template,
        })
    }

    fn template(&self) -> Result<&ChatTemplate> {
        self.chat_template.as_ref().ok_or_else(|| {
            EngineError::ChatTemplate("the model has no tokenizer.chat_template".into())
        })
    }

    /// Renders `messages` with the model's template (generation prompt added).
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        self.template()?.render(messages, true)
    }

    /// Whether the model's chat template takes function definitions.
    pub fn chat_template_takes_tools(&self) -> bool {
        self.chat_template.as_ref().is_some_and(|t| t.takes_tools())
    }

    /// Renders `messages` and `tools` (OpenAI's function list) with the
    /// model's template (generation prompt added).
    pub fn render_chat_with_tools(
        &self,
        messages: &[Message],
        tools: &serde_json::Value,
    ) -> Result<String> {
        self.template()?
            .render_with_tools(messages, true, Some(tools))
    }

    /// Prompt ids for `text`, as one user message when `chat`. Special
    /// tokens written in the text are parsed (as llama.cpp's server does).
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>> {
        let text = if chat {
            self.render_chat(&[Message::new("user", text)])?
        } else {
            text.to_string()
        };
        Ok(self.tokenizer.encode(&text, true, true))
    }
}
