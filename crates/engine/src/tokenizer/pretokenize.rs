//! Pre-tokenizers for byte-level BPE, named by `tokenizer.ggml.pre`: each is
//! a list of regexes applied in turn; every match and every gap between
//! matches becomes a piece (llama.cpp's `unicode_regex_split`).

use fancy_regex::Regex;

use crate::error::{EngineError, Result};

/// GPT-2's split: contractions, letters, numbers, other symbols, spaces.
/// The trailing `\s+` is what llama.cpp emits for the gap it leaves.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub struct PreTokenizer {
    name: String,
    regexes: Vec<Regex>,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for `name` (`None`: the default).
    pub fn named(name: Option<&str>) -> Result<Self> {
        let name = name.unwrap_or("default");
        let patterns: Vec<&str> = match name {
            "default" => vec![
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2,
                r"\p{N}+",
                r"[0-9][0-9][0-9]",
            ],
            "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de" => {
                vec![GPT2]
            }
            // One digit per token, then GPT-2's split.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
                vec![r"\p{N}", GPT2]
            }
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![LLAMA3],
            other => {
                return Err(EngineError::metadata(
                    "tokenizer.ggml.pre",
                    format!("pre-tokenizer `{other}` is not supported (default, gpt2, smollm, starcoder, llama-bpe, ...)"),
                ))
            }
        };
        let regexes = patterns
            .into_iter()
            .map(|p| Regex::new(p).map_err(|e| EngineError::Tokenizer(format!("regex {p}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: name.to_string(),
            regexes,
        })
    }

    /// The `tokenizer.ggml.pre` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Splits `text` into pieces.
    pub fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut pieces = vec![text];
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece) {
                    // A backtracking limit on pathological input ends the
                    // matching; the rest stays one piece.
                    let Ok(m) = m else { break };
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm_isolates_digits_and_keeps_space_runs() {
        let p = PreTokenizer::named(Some("smollm")).unwrap();
        assert_eq!(
            p.split("ab 123  cd"),
            vec!["ab", " ", "1", "2", "3", " ", " cd"]
        );
        assert_eq!(p.split("I'm here!\n"), vec!["I", "'m", " here", "!", "\n"]);
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error_naming_the_key() {
        let e = PreTokenizer::named(Some("martian"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer.ggml.pre") && e.contains("martian"),
            "{e}"
        );
    }
}
