//! An incremental parser for the `text/event-stream` format, following the event stream
//! interpretation rules of the WHATWG HTML standard (section "Server-sent events").
//!
//! Only what an MCP client needs is kept: the event type and data of each dispatched
//! event. `id` and `retry` fields are ignored because this transport never reconnects a
//! stream (a legacy SSE session dies with its stream).

use std::collections::VecDeque;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The event type; `message` when the event had no `event` field.
    pub(crate) event: String,
    /// The data lines of the event joined by `\n`.
    pub(crate) data: String,
}

/// The stream contained an event (or line) larger than the configured limit.
#[derive(Debug, thiserror::Error)]
#[error("an SSE event exceeded the maximum size of {max_size} bytes")]
pub(crate) struct EventTooLarge {
    max_size: usize,
}

/// Incremental event stream parser: feed it chunks of bytes as they arrive, it appends
/// completed events to a queue.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// Bytes of the line being received.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`, so a `\n` starting this one belongs to it.
    after_cr: bool,
    /// No line has been completed yet (a byte order mark may start the first one).
    first_line: bool,
    /// The event type buffer.
    event_type: String,
    /// The data buffer, each data line followed by `\n`.
    data: String,
    /// The largest number of bytes an event (its data plus the line being read) may take.
    max_event_size: usize,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// A parser that refuses events larger than `max_event_size` bytes.
    pub(crate) fn new(max_event_size: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event_type: String::new(),
            data: String::new(),
            max_event_size,
        }
    }

    /// Parses `chunk`, appending every event it completes to `out`.
    ///
    /// After an error the parser's state is unspecified; the stream must be abandoned.
    pub(crate) fn feed(
        &mut self,
        mut chunk: &[u8],
        out: &mut VecDeque<SseEvent>,
    ) -> Result<(), EventTooLarge> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.append(&chunk[..end])?;
            self.finish_line(out);
            let terminator = chunk[end];
            chunk = &chunk[end + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.append(chunk)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), EventTooLarge> {
        if self.data.len() + self.line.len() + bytes.len() > self.max_event_size {
            return Err(EventTooLarge {
                max_size: self.max_event_size,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn finish_line(&mut self, out: &mut VecDeque<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        let mut bytes = line.as_slice();
        if self.first_line {
            self.first_line = false;
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        if bytes.is_empty() {
            self.dispatch(out);
        } else if !bytes.starts_with(b":") {
            // Lines starting with a colon are comments (keepalives); everything else is a field.
            let (name, value) = match bytes.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &bytes[colon + 1..];
                    (&bytes[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (bytes, &[][..]),
            };
            match name {
                b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
                b"data" => {
                    self.data.push_str(&String::from_utf8_lossy(value));
                    self.data.push('\n');
                }
                // `id`, `retry` and unknown fields do not matter here.
                _ => {}
            }
        }
        // Give the allocation back so a long line does not cost a new one each time.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut VecDeque<SseEvent>) {
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            // An event without data lines is not dispatched.
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        out.push_back(SseEvent {
            event: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn event(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new(MAX);
        let mut out = VecDeque::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).expect("within the size limit");
        }
        out.into()
    }

    fn parse(text: &str) -> Vec<SseEvent> {
        parse_chunks(&[text.as_bytes()])
    }

    #[test]
    fn endpoint_then_message() {
        let text = "event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n\
                    event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n";
        assert_eq!(
            parse(text),
            vec![
                event("endpoint", "/messages/?session_id=abc"),
                event("message", r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            ]
        );
    }

    #[test]
    fn comments_and_keepalives_produce_no_events() {
        let text = ": ping - 2024-01-01 00:00:00\r\n\r\n:\n\n: another\n\n";
        assert_eq!(parse(text), vec![]);
    }

    #[test]
    fn event_without_type_is_a_message_and_data_lines_are_joined() {
        assert_eq!(
            parse("data: a\ndata:b\ndata:  c\n\n"),
            vec![event("message", "a\nb\n c")]
        );
    }

    #[test]
    fn empty_data_field_still_dispatches() {
        assert_eq!(parse("event: x\ndata\n\n"), vec![event("x", "")]);
        assert_eq!(parse("data:\n\n"), vec![event("message", "")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_its_type_does_not_leak() {
        assert_eq!(
            parse("event: endpoint\n\ndata: later\n\n"),
            vec![event("message", "later")]
        );
    }

    #[test]
    fn id_retry_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse("id: 7\nretry: 1000\nfoo: bar\nevent: message\ndata: x\n\n"),
            vec![event("message", "x")]
        );
    }

    #[test]
    fn incomplete_event_at_end_of_stream_is_not_dispatched() {
        assert_eq!(parse("event: message\ndata: {\"a\":1}\n"), vec![]);
    }

    #[test]
    fn all_line_terminators_are_accepted() {
        let expected = vec![event("message", "1"), event("message", "2")];
        assert_eq!(parse("data: 1\n\ndata: 2\n\n"), expected);
        assert_eq!(parse("data: 1\r\rdata: 2\r\r"), expected);
        assert_eq!(parse("data: 1\r\n\r\ndata: 2\r\n\r\n"), expected);
    }

    #[test]
    fn events_split_at_every_byte_parse_the_same() {
        let text = "\u{feff}event: endpoint\r\ndata: /m?s=1\r\n\r\n: ping\r\n\r\nevent: message\r\ndata: {\"x\":\"é\"}\r\n\r\n";
        let whole = parse(text);
        assert_eq!(
            whole,
            vec![
                event("endpoint", "/m?s=1"),
                event("message", "{\"x\":\"é\"}")
            ]
        );
        let bytes = text.as_bytes();
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_chunks(&singles), whole);
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(parse_chunks(&[a, &[], b]), whole, "split at {split}");
        }
    }

    #[test]
    fn cr_at_chunk_end_followed_by_lf_is_one_terminator() {
        assert_eq!(
            parse_chunks(&[b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n"]),
            vec![event("message", "1"), event("message", "2")]
        );
    }

    #[test]
    fn bom_only_stripped_at_stream_start() {
        assert_eq!(
            parse("\u{feff}data: 1\n\n\u{feff}data: 2\n\n"),
            vec![event("message", "1")]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(
            parse_chunks(&[b"data: a\xFFb\n\n"]),
            vec![event("message", "a\u{FFFD}b")]
        );
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut parser = SseParser::new(16);
        let mut out = VecDeque::new();
        parser
            .feed(b"data: 0123456789\n", &mut out)
            .expect("a 16-byte line fits");
        let error = parser
            .feed(b"data: 0123456789\n", &mut out)
            .expect_err("11 bytes of data plus a 16-byte line do not fit");
        assert!(error.to_string().contains("16 bytes"));
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_line_without_terminator_is_an_error() {
        let mut parser = SseParser::new(8);
        let mut out = VecDeque::new();
        parser.feed(b"data", &mut out).expect("fits");
        assert!(parser.feed(b": 123456789", &mut out).is_err());
    }

    #[test]
    fn limit_applies_per_event() {
        let mut parser = SseParser::new(16);
        let mut out = VecDeque::new();
        for _ in 0..10 {
            parser
                .feed(b"data: 0123456789\n\n", &mut out)
                .expect("each event fits");
        }
        assert_eq!(out.len(), 10);
    }
}
