//! Client input quoted back in error messages, cut to a bounded length.
//!
//! "unknown tool: …" helps a client find its mistake; echoing a 4 MiB name
//! or URI back does not, and turns every bad request into an equally large
//! answer (and log line, where a client logs it).

use std::fmt;

/// Longest prefix of client input that an error message quotes.
pub const MAX_ECHO_BYTES: usize = 200;

/// `text` for an error message: whole when short, else its first
/// [`MAX_ECHO_BYTES`] bytes (cut at a character boundary) and its length.
pub fn echoed(text: &str) -> Echoed<'_> {
    Echoed(text)
}

/// See [`echoed`].
pub struct Echoed<'a>(&'a str);

impl fmt::Display for Echoed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= MAX_ECHO_BYTES {
            return f.write_str(text);
        }
        let mut end = MAX_ECHO_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}… ({} bytes)", &text[..end], text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole_and_long_input_is_cut_at_a_char_boundary() {
        assert_eq!(echoed("fs_read").to_string(), "fs_read");
        let exact = "x".repeat(MAX_ECHO_BYTES);
        assert_eq!(echoed(&exact).to_string(), exact);
        let long = format!("{}{}", "y".repeat(MAX_ECHO_BYTES - 1), "é".repeat(1000));
        let shown = echoed(&long).to_string();
        assert_eq!(
            shown,
            format!("{}… ({} bytes)", "y".repeat(MAX_ECHO_BYTES - 1), long.len())
        );
    }
}
