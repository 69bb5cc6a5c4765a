//! Splits raw text around special tokens written literally in it (such as
//! `<|im_start|>`), as llama.cpp's `tokenizer_st_partition` does: longest
//! texts first, control tokens only when special parsing is on.

use super::vocab::{TokenType, Vocab};

/// A piece of input: text still to tokenize, or a special token found in it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Special tokens in matching order.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    /// (id, is control-like) sorted by text length, longest first.
    ordered: Vec<(u32, bool)>,
}

impl SpecialTokens {
    pub fn new(vocab: &Vocab) -> Self {
        let mut ordered: Vec<(u32, bool)> = vocab
            .types
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t {
                TokenType::Control | TokenType::Unknown => Some((i as u32, true)),
                TokenType::UserDefined => Some((i as u32, false)),
                _ => None,
            })
            .filter(|(i, _)| !vocab.texts[*i as usize].is_empty())
            .collect();
        ordered.sort_by_key(|(i, _)| std::cmp::Reverse(vocab.texts[*i as usize].len()));
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
        for &(id, control) in &self.ordered {
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
                            if at > 0 {
                                next.push(Fragment::Text(&rest[..at]));
                            }
                            next.push(Fragment::Token(id));
                            rest = &rest[at + needle.len()..];
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
