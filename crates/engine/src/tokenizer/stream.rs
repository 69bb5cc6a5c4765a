//! Turns generated tokens into text incrementally: a token may end in the
//! middle of a UTF-8 character, so bytes are held back until they form
//! whole characters.

use super::Tokenizer;

/// Accumulates token bytes and releases complete UTF-8 text.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text that became complete (maybe empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        tok.token_bytes(id, false, &mut self.pending);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // An invalid sequence (not merely incomplete) will never become
                // valid: release it replaced rather than hold it forever.
                let cut = if e.error_len().is_some() {
                    self.pending.len()
                } else {
                    valid
                };
                let out = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
                self.pending.drain(..cut);
                out
            }
        }
    }

    /// Whatever is still held back (at the end of generation).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
