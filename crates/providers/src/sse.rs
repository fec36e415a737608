//! An incremental Server-Sent Events parser.
//!
//! Feed it bytes as they arrive, in pieces of any size; it returns each event as soon as its
//! terminating blank line is seen, together with the exact bytes that made it up, so a proxy
//! can forward events unchanged. Follows the WHATWG rules that matter here: `\n`, `\r\n` and
//! `\r` line ends (also split across reads), several `data:` lines joined with `\n`, `:` comment
//! lines ignored, `event:`/`id:`/`retry:` tolerated, one space after the colon removed.

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The exact bytes of the event, from its first line through its blank line.
    pub raw: Bytes,
}

/// The event grew past the configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is larger than {0} bytes")]
pub struct EventTooLarge(pub usize);

/// Incremental parser state: only the current, incomplete event is held.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// Bytes received but not yet split into complete lines.
    pending: BytesMut,
    /// Bytes of the complete lines of the current event.
    raw: BytesMut,
    data: String,
    has_data: bool,
    event: Option<String>,
}

impl SseParser {
    /// A parser that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            pending: BytesMut::new(),
            raw: BytesMut::new(),
            data: String::new(),
            has_data: false,
            event: None,
        }
    }

    /// Adds bytes; returns the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((line_len, terminator_len)) = self.next_line() {
            let line = self.pending.split_to(line_len + terminator_len).freeze();
            self.raw.extend_from_slice(&line);
            let content = line.get(..line_len).unwrap_or_default();
            if content.is_empty() {
                if let Some(event) = self.dispatch() {
                    events.push(event);
                }
            } else {
                self.field(content);
            }
        }
        if self.raw.len() + self.pending.len() > self.max_event_bytes {
            return Err(EventTooLarge(self.max_event_bytes));
        }
        Ok(events)
    }

    /// Whether bytes of an unfinished event are held (at end of input: a truncated event).
    pub fn has_partial_event(&self) -> bool {
        !self.pending.is_empty() || self.has_data
    }

    /// Length of the next complete line and of its terminator, if a whole line is buffered.
    /// A trailing `\r` waits for the next byte, which may be the `\n` of a `\r\n`.
    fn next_line(&self) -> Option<(usize, usize)> {
        let position = self
            .pending
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')?;
        match self.pending.get(position) {
            Some(b'\n') => Some((position, 1)),
            _ => match self.pending.get(position + 1) {
                Some(b'\n') => Some((position, 2)),
                Some(_) => Some((position, 1)),
                None => None,
            },
        }
    }

    fn field(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return; // comment
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (line.get(..colon).unwrap_or_default(), value)
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.into_owned()),
            _ => {} // `id`, `retry` and unknown fields are tolerated and ignored
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let raw = std::mem::take(&mut self.raw).freeze();
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None; // comments or fields without data dispatch nothing
        }
        Some(SseEvent {
            data: std::mem::take(&mut self.data),
            event,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new(1 << 20);
        chunks
            .iter()
            .flat_map(|chunk| parser.push(chunk).unwrap())
            .collect()
    }

    #[test]
    fn every_line_ending_and_multi_line_data() {
        let input = b": keep-alive\r\nevent: message\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\ndata: c\n\ndata: d\r\rretry: 10\n\n";
        let events = parse_all(&[input]);
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["a\nb", "c", "d"]);
        assert_eq!(events[0].event.as_deref(), Some("message"));
        let raw: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(
            raw,
            b": keep-alive\r\nevent: message\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\ndata: c\n\ndata: d\r\r"
        );
    }

    #[test]
    fn crlf_split_between_reads_is_one_line_end() {
        let events = parse_all(&[b"data: x\r", b"\n\r", b"\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "x");
        assert_eq!(&events[0].raw[..], b"data: x\r\n\r\n");
    }

    #[test]
    fn comment_only_blocks_dispatch_nothing_and_partial_events_are_reported() {
        let mut parser = SseParser::new(1024);
        assert!(parser.push(b": ping\n\n").unwrap().is_empty());
        assert!(!parser.has_partial_event());
        assert!(parser.push(b"data: half").unwrap().is_empty());
        assert!(parser.has_partial_event());
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut parser = SseParser::new(16);
        assert_eq!(
            parser.push(b"data: 0123456789abcdef"),
            Err(EventTooLarge(16))
        );
    }
}
