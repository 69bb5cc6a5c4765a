//! SentencePiece-style (`llama`) tokenization as llama.cpp does it: spaces
//! become `▁`, adjacent symbols merge highest score first while the merged
//! text is a token, and characters outside the vocabulary fall back to
//! `<0xXX>` byte tokens.

use super::vocab::Vocab;

/// The word-boundary marker.
pub const SPACE: char = '\u{2581}';

/// Tokenizes one fragment (already space-escaped), appending to `out`.
pub fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<&str> = text
        .char_indices()
        .map(|(i, c)| &text[i..i + c.len_utf8()])
        .collect();
    // Symbols are always contiguous slices of `text`, so a merge is a wider slice.
    let start_of = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
    loop {
        let mut best: Option<(f32, usize, u32)> = None;
        for i in 0..symbols.len().saturating_sub(1) {
            let start = start_of(symbols[i]);
            let end = start_of(symbols[i + 1]) + symbols[i + 1].len();
            if let Some(id) = vocab.id(&text[start..end]) {
                let score = vocab.scores[id as usize];
                if best.is_none_or(|(s, _, _)| score > s) {
                    best = Some((score, i, id));
                }
            }
        }
        let Some((_, i, _)) = best else { break };
        let start = start_of(symbols[i]);
        let end = start_of(symbols[i + 1]) + symbols[i + 1].len();
        symbols[i] = &text[start..end];
        symbols.remove(i + 1);
    }
    for s in symbols {
        match vocab.id(s) {
            Some(id) => out.push(id),
            None => {
                for b in s.bytes() {
                    if let Some(id) = vocab.id(&format!("<0x{b:02X}>")) {
                        out.push(id);
                    }
                }
            }
        }
    }
}

/// The byte a `<0xXX>` token stands for.
pub fn byte_of(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}
