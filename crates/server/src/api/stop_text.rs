//! OpenAI's APIs leave the stop sequence out of the text (TGI keeps it).
//! While streaming, text that may be the start of a stop sequence is held
//! back until the next token shows whether it is.

/// Streams text with the stop sequences cut off.
#[derive(Debug, Default)]
pub struct StopText {
    stops: Vec<String>,
    held: String,
}

impl StopText {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Adds generated text; returns what can be sent now.
    pub fn push(&mut self, piece: &str) -> String {
        self.held.push_str(piece);
        if let Some(cut) = self.stop_at() {
            self.held.truncate(cut);
        }
        let keep = self.partial_stop_len();
        let send = self.held.len() - keep;
        let rest = self.held.split_off(send);
        std::mem::replace(&mut self.held, rest)
    }

    /// The text still held back, once generation has ended: everything
    /// before a stop sequence.
    pub fn finish(&mut self) -> String {
        if let Some(cut) = self.stop_at() {
            self.held.truncate(cut);
        }
        std::mem::take(&mut self.held)
    }

    /// Cuts a whole text (non-streaming responses).
    pub fn cut(stops: &[String], text: &str) -> String {
        let mut s = Self::new(stops.to_vec());
        let mut out = s.push(text);
        out.push_str(&s.finish());
        out
    }

    fn stop_at(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest end of `held` that begins some stop sequence.
    fn partial_stop_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > best && self.held.ends_with(&stop[..i]) {
                    best = i;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_are_cut_even_across_tokens() {
        let mut s = StopText::new(vec!["END".into()]);
        assert_eq!(s.push("hello E"), "hello ");
        assert_eq!(s.push("N"), "");
        assert_eq!(s.push("D and more"), "");
        assert_eq!(s.finish(), "");
        let mut s = StopText::new(vec!["END".into()]);
        assert_eq!(s.push("an E"), "an ");
        assert_eq!(s.push("ch"), "Ech");
        assert_eq!(s.finish(), "");
        assert_eq!(StopText::cut(&["\n\n".into()], "a\nb\n\nc"), "a\nb");
        assert_eq!(StopText::cut(&[], "abc"), "abc");
        let mut s = StopText::new(vec!["é!".into()]);
        assert_eq!(s.push("café"), "caf");
        assert_eq!(s.finish(), "é");
    }
}
