//! Pre-tokenizers for byte-level BPE, named by `tokenizer.ggml.pre`: each is
//! a list of regexes applied in turn; every match and every gap between
//! matches becomes a piece (llama.cpp's `unicode_regex_split`).

use fancy_regex::Regex;

use crate::error::{EngineError, Result};

/// GPT-2's split: contractions, letters, numbers, other symbols, spaces.
/// The trailing `\s+` is what llama.cpp emits for the gap it leaves.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek LLM's letters: Latin, Greek, Cyrillic and the other cased
/// scripts, spelled out as ranges (its `tokenizer.json` does the same).
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+";

/// CJK ideographs and Hangul, kept together by both DeepSeek splits.
const DEEPSEEK_CJK: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub struct PreTokenizer {
    name: String,
    regexes: Vec<Regex>,
    /// Llama 3's rule: a piece that is itself a token is that token, whatever
    /// the merges would make of it.
    pub ignore_merges: bool,
    /// Whether the model starts with BOS when its metadata does not say.
    pub default_bos: bool,
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
            "deepseek-llm" => vec![
                r"[\r\n]",
                DEEPSEEK_LLM_LETTERS,
                "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
                r"\s+$",
                DEEPSEEK_CJK,
                r"\p{N}+",
            ],
            "deepseek-coder" => vec![
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                DEEPSEEK_CJK,
                r"\p{N}",
            ],
            other => {
                return Err(EngineError::metadata(
                    "tokenizer.ggml.pre",
                    format!("pre-tokenizer `{other}` is not supported (default, gpt2, smollm, starcoder, llama-bpe, deepseek-llm, deepseek-coder, ...)"),
                ))
            }
        };
        let regexes = patterns
            .into_iter()
            .map(|p| Regex::new(p).map_err(|e| EngineError::Tokenizer(format!("regex {p}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let llama3 = matches!(
            name,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral"
        );
        Ok(Self {
            name: name.to_string(),
            regexes,
            ignore_merges: llama3,
            default_bos: llama3,
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
