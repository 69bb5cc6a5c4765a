//! GPT-2 style byte-level BPE: bytes map to printable characters, then the
//! lowest-ranked adjacent pair is merged until no merge applies.

use std::collections::HashMap;

use super::vocab::Vocab;
use crate::error::{EngineError, Result};

/// GPT-2's reversible byte -> character table.
#[derive(Debug, Clone)]
pub struct ByteMap {
    to_char: [char; 256],
    to_byte: HashMap<char, u8>,
}

impl ByteMap {
    pub fn new() -> Self {
        let mut to_char = ['\0'; 256];
        let mut extra = 0u32;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            to_char[b as usize] = if printable {
                b as char
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            };
        }
        let to_byte = to_char
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        Self { to_char, to_byte }
    }

    /// The character standing for byte `b`.
    pub fn char(&self, b: u8) -> char {
        self.to_char[b as usize]
    }

    /// The byte a character stands for, if it is one of the 256.
    pub fn byte(&self, c: char) -> Option<u8> {
        self.to_byte.get(&c).copied()
    }
}

impl Default for ByteMap {
    fn default() -> Self {
        Self::new()
    }
}

/// Merge table over token ids.
#[derive(Debug, Clone)]
pub struct Bpe {
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    pub bytes: ByteMap,
}

impl Bpe {
    /// Builds the merge table from `tokenizer.ggml.merges` entries ("a b").
    /// Merges whose parts or result are not tokens are ignored, as llama.cpp
    /// can never produce them either.
    pub fn new(vocab: &Vocab, merges: &[String]) -> Result<Self> {
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // The separator is the first space after the first character.
            let split = m
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    EngineError::metadata(
                        "tokenizer.ggml.merges",
                        format!("entry {rank} `{m}` has no space"),
                    )
                })?;
            let (a, b) = (&m[..split], &m[split + 1..]);
            if let (Some(l), Some(r), Some(merged)) =
                (vocab.id(a), vocab.id(b), vocab.id(&format!("{a}{b}")))
            {
                table.entry((l, r)).or_insert((rank as u32, merged));
            }
        }
        Ok(Self {
            merges: table,
            bytes: ByteMap::new(),
        })
    }

    /// Tokenizes one pre-tokenized piece, appending ids to `out`. With
    /// `whole_first`, a piece that is a token as it stands is that token.
    pub fn encode_piece(&self, vocab: &Vocab, piece: &str, whole_first: bool, out: &mut Vec<u32>) {
        if whole_first {
            let encoded: String = piece.bytes().map(|b| self.bytes.char(b)).collect();
            if let Some(id) = vocab.id(&encoded) {
                out.push(id);
                return;
            }
        }
        // One symbol per byte; `None` marks a byte whose character is not in
        // the vocabulary (a broken vocabulary; it is dropped as llama.cpp does).
        let mut symbols: Vec<Option<u32>> = Vec::with_capacity(piece.len());
        for b in piece.bytes() {
            let c = self.bytes.char(b);
            let mut buf = [0u8; 4];
            symbols.push(vocab.id(c.encode_utf8(&mut buf)));
        }
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| match (w[0], w[1]) {
                    (Some(l), Some(r)) => self.merges.get(&(l, r)).map(|&(rank, m)| (rank, i, m)),
                    _ => None,
                })
                .min_by_key(|&(rank, i, _)| (rank, i));
            let Some((_, i, merged)) = best else { break };
            symbols[i] = Some(merged);
            symbols.remove(i + 1);
        }
        out.extend(symbols.into_iter().flatten());
    }

    /// The bytes a byte-level token text stands for.
    pub fn decode_text(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.bytes.byte(c) {
                Some(b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::TokenType;

    #[test]
    fn byte_map_round_trips_and_space_is_g_dot() {
        let m = ByteMap::new();
        assert_eq!(m.char(b' '), 'Ġ');
        assert_eq!(m.char(b'\n'), 'Ċ');
        for b in 0..=255u8 {
            assert_eq!(m.byte(m.char(b)), Some(b));
        }
    }

    #[test]
    fn merges_apply_by_rank() {
        let m = ByteMap::new();
        let mut texts: Vec<String> = (0..=255u8).map(|b| m.char(b).to_string()).collect();
        texts.extend(["ab".to_string(), "bc".to_string(), "abc".to_string()]);
        let n = texts.len();
        let vocab = Vocab::new(texts, vec![TokenType::Normal; n], vec![0.0; n]);
        // "b c" outranks "a b": "abc" -> a + bc, then no merge "a bc".
        let bpe = Bpe::new(&vocab, &["b c".into(), "a b".into(), "ab c".into()]).unwrap();
        let mut out = vec![];
        bpe.encode_piece(&vocab, "abc", false, &mut out);
        assert_eq!(out, vec![b'a' as u32, 257]);
        // Llama 3's rule: a piece that is a token is taken whole.
        out.clear();
        bpe.encode_piece(&vocab, "abc", true, &mut out);
        assert_eq!(out, vec![258]);
        out.clear();
        bpe.encode_piece(&vocab, "abc", false, &mut out);
        assert_eq!(out, vec![b'a' as u32, 257]);
    }
}
