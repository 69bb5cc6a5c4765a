//! The one Server-Sent Events parser: bytes in, events out, incrementally, so
//! an event split across network reads (or several events in one read) come
//! out exactly once each.
//!
//! Follows the WHATWG event-stream rules that matter for LLM servers: lines end
//! in `\n` or `\r\n`; an empty line dispatches; `data:` lines are joined with
//! `\n`; one space after the colon is dropped; lines starting with `:` are
//! comments (keep-alives) and never become events; an event with no data is
//! not dispatched. A lone `\r` as line end is not supported (no LLM server
//! sends it).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when the server named the event type.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unfinished line.
    partial: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one network read; pushes every event it completes to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, out);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, out);
            }
        }
        self.partial.extend_from_slice(rest);
    }

    /// Whether bytes or fields are waiting for a line end or a blank line:
    /// a stream that closes here was cut mid-event.
    pub fn is_mid_event(&self) -> bool {
        !self.partial.is_empty() || self.has_data
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.has_data = false;
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            // `id` and `retry` steer reconnection, which a benchmark never does.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn events_split_across_reads_come_out_once() {
        let whole = b"data: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\n";
        for cut in 0..whole.len() {
            let ev = parse_all(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(data(&ev), ["{\"a\":1}", "{\"b\":2}"], "cut at {cut}");
        }
    }

    #[test]
    fn comments_and_empty_events_are_not_dispatched() {
        let ev = parse_all(&[b": keep-alive\n\n\n\nevent: ping\n\ndata: x\n\n"]);
        assert_eq!(data(&ev), ["x"]);
        assert_eq!(
            ev[0].event, None,
            "the event name does not leak into the next event"
        );
    }

    #[test]
    fn multi_line_data_and_event_names() {
        let ev = parse_all(&[b"event: error\ndata: a\ndata:  b\nid: 7\n\n"]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event.as_deref(), Some("error"));
        assert_eq!(ev[0].data, "a\n b");
    }

    #[test]
    fn cut_stream_is_mid_event() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: {\"tok", &mut out);
        assert!(p.is_mid_event());
        p.feed(b"en\":1}\n", &mut out);
        assert!(
            p.is_mid_event(),
            "data without the blank line is not an event yet"
        );
        p.feed(b"\n", &mut out);
        assert!(!p.is_mid_event());
        assert_eq!(data(&out), ["{\"token\":1}"]);
    }
}
