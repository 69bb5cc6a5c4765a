//! Splits raw text around special tokens written literally in it (such as
//! `<|im_start|>`), as llama.cpp's `tokenizer_st_partition` does: longest
//! texts first, control tokens only when special parsing is on, whitespace
//! beside a token taken where the model's rules say so.

use super::attributes::Strip;
use super::vocab::{TokenType, Vocab};

/// A piece of input: text still to tokenize, or a special token found in it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// A special token as matched in text.
#[derive(Debug, Clone, Copy)]
struct Special {
    id: u32,
    /// Control-like: matched only with special parsing on.
    control: bool,
    strip: Strip,
}

/// Special tokens in matching order.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    /// Sorted by text length, longest first.
    ordered: Vec<Special>,
}

/// Whitespace as C's `isspace` (llama.cpp's strip rules) sees it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

impl SpecialTokens {
    /// The vocabulary's control, unknown and user-defined tokens; `strip`
    /// names those that take whitespace from their neighbours.
    pub fn new(vocab: &Vocab, strip: &[(u32, Strip)]) -> Self {
        let mut ordered: Vec<Special> = vocab
            .types
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t {
                TokenType::Control | TokenType::Unknown => Some((i as u32, true)),
                TokenType::UserDefined => Some((i as u32, false)),
                _ => None,
            })
            .filter(|(i, _)| !vocab.texts[*i as usize].is_empty())
            .map(|(id, control)| Special {
                id,
                control,
                strip: strip
                    .iter()
                    .find(|(s, _)| *s == id)
                    .map_or_else(Strip::default, |(_, s)| *s),
            })
            .collect();
        ordered.sort_by_key(|s| std::cmp::Reverse(vocab.texts[s.id as usize].len()));
        Self { ordered }
    }

    /// Splits `text`; user-defined tokens always match, control tokens only
    /// with `parse_special`.
    pub fn partition<'a>(
        &self,
        vocab: &Vocab,
        text: &'a str,
        parse_special: bool,
    ) -> Vec<Fragment<'a>> {
        let mut frags = vec![Fragment::Text(text)];
        for &Special { id, control, strip } in &self.ordered {
            if control && !parse_special {
                continue;
            }
            let needle = vocab.texts[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                match f {
                    Fragment::Text(s) if s.contains(needle) => {
                        let mut rest = s;
                        while let Some(at) = rest.find(needle) {
                            let mut left = &rest[..at];
                            if strip.left {
                                left = left.trim_end_matches(is_space);
                            }
                            if !left.is_empty() {
                                next.push(Fragment::Text(left));
                            }
                            next.push(Fragment::Token(id));
                            rest = &rest[at + needle.len()..];
                            if strip.right {
                                rest = rest.trim_start_matches(is_space);
                            }
                        }
                        if !rest.is_empty() {
                            next.push(Fragment::Text(rest));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        frags
    }
}
