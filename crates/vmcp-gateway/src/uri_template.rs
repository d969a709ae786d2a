//! Matching resource URIs against RFC 6570 resource templates, in time
//! linear in the URI's length.
//!
//! A template is compiled once (when the catalogue is built) into a list of
//! tokens: literal bytes and variables. `{var}` matches one or more
//! characters other than `/`; `{+var}`, `{#var}` and `{var*}` match one or
//! more of anything. Matching runs the template as a nondeterministic
//! automaton over the URI's bytes, keeping the set of template positions
//! reachable so far, so a URI of `n` bytes costs at most `n × (tokens + 1)`
//! steps whatever it contains — a backtracking matcher needs quadratic or
//! worse time for a long URI that almost matches.
//!
//! Working on bytes is exact: literals are whole UTF-8 strings and a URI
//! ends on a character boundary, so a variable can only ever end between
//! two characters.

/// One element of a compiled template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// This byte, exactly.
    Byte(u8),
    /// One or more bytes; `/` only when `greedy`.
    Var { greedy: bool },
}

impl Token {
    /// Whether a variable token can take `byte`.
    fn var_takes(greedy: bool, byte: u8) -> bool {
        greedy || byte != b'/'
    }
}

/// A compiled resource template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriTemplate {
    /// `None` for a template that cannot match anything (an unclosed `{`).
    tokens: Option<Box<[Token]>>,
}

/// The outcome of one match, with the work it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchRun {
    /// Whether the URI matches.
    pub matched: bool,
    /// Automaton steps taken (state × byte visits): the cost of the match.
    pub steps: u64,
}

impl UriTemplate {
    /// Compiles `template`. A malformed template (an unclosed `{`) is kept
    /// and matches nothing.
    pub fn compile(template: &str) -> Self {
        let mut tokens = Vec::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            tokens.extend(rest[..open].bytes().map(Token::Byte));
            let Some(close) = rest[open..].find('}') else {
                return Self { tokens: None };
            };
            let expr = &rest[open + 1..open + close];
            tokens.push(Token::Var {
                greedy: expr.starts_with('+') || expr.starts_with('#') || expr.ends_with('*'),
            });
            rest = &rest[open + close + 1..];
        }
        tokens.extend(rest.bytes().map(Token::Byte));
        Self {
            tokens: Some(tokens.into_boxed_slice()),
        }
    }

    /// Whether `uri` matches this template.
    pub fn matches(&self, uri: &str) -> bool {
        self.run(uri).matched
    }

    /// Matches `uri` and counts the steps taken (at most
    /// `uri.len() × (tokens + 1)`).
    pub fn run(&self, uri: &str) -> MatchRun {
        let Some(tokens) = self.tokens.as_deref() else {
            return MatchRun {
                matched: false,
                steps: 0,
            };
        };
        let end = tokens.len();
        // Position `j` means "tokens[..j] matched the bytes so far"; when
        // tokens[j - 1] is a variable, that variable may take more bytes.
        let mut current = vec![0usize];
        let mut next = Vec::new();
        // Deduplication: `added[j] == i + 1` once `j` is in `next` for byte `i`.
        let mut added = vec![0usize; end + 1];
        let mut steps = 0u64;
        for (i, byte) in uri.bytes().enumerate() {
            let stamp = i + 1;
            let mut add = |position: usize, next: &mut Vec<usize>| {
                if added[position] != stamp {
                    added[position] = stamp;
                    next.push(position);
                }
            };
            next.clear();
            for &position in &current {
                steps += 1;
                if let Some(&Token::Var { greedy }) = position.checked_sub(1).map(|p| &tokens[p])
                    && Token::var_takes(greedy, byte)
                {
                    add(position, &mut next);
                }
                match tokens.get(position) {
                    Some(&Token::Byte(expected)) if expected == byte => {
                        add(position + 1, &mut next)
                    }
                    Some(&Token::Var { greedy }) if Token::var_takes(greedy, byte) => {
                        add(position + 1, &mut next);
                    }
                    _ => {}
                }
            }
            std::mem::swap(&mut current, &mut next);
            if current.is_empty() {
                return MatchRun {
                    matched: false,
                    steps,
                };
            }
        }
        MatchRun {
            matched: current.contains(&end),
            steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_rfc_6570_level_1_and_2() {
        let cases = [
            ("a://items/{id}", "a://items/1", true),
            ("a://items/{id}", "a://items/", false),
            ("a://items/{id}", "a://items/1/2", false),
            ("a://{+rest}", "a://x/y/z", true),
            ("a://{#frag}", "a://x/y", true),
            ("a://{path*}", "a://x/y", true),
            ("a://{+rest}", "a://", false),
            ("a://{x}/{y}", "a://1/2", true),
            ("a://{x}/{y}", "a://12", false),
            ("a://{x}{y}", "a://1", false),
            ("a://{x}{y}", "a://12", true),
            ("a://{+a}/end", "a://x/end/end", true),
            ("a://{+a}/end", "a://x/end/ends", false),
            ("a://{x}.json", "a://é.json", true),
            ("a://é/{x}", "a://é/1", true),
            ("a://é/{x}", "a://e/1", false),
            ("exact", "exact", true),
            ("exact", "exac", false),
            ("exact", "exactly", false),
            ("", "", true),
            ("broken{", "broken{", false),
            ("broken{x", "broken{x", false),
        ];
        for (template, uri, want) in cases {
            assert_eq!(
                UriTemplate::compile(template).matches(uri),
                want,
                "{template} vs {uri}"
            );
        }
    }

    /// A URI that almost matches a template with several greedy variables:
    /// a backtracking matcher tries every split (cubic here).
    fn almost(n: usize) -> String {
        format!("t://{}", "x/".repeat(n / 2))
    }

    #[test]
    fn cost_grows_linearly_with_the_uri() {
        let template = UriTemplate::compile("t://{+a}{+b}/{c}/{+d}/end");
        let small = template.run(&almost(100_000));
        let large = template.run(&almost(400_000));
        assert!(!small.matched && !large.matched);
        // Four times the input, four times the work (within rounding).
        let ratio = large.steps as f64 / small.steps as f64;
        assert!((3.9..4.1).contains(&ratio), "ratio {ratio}");
        let bound = 400_004 * (template.tokens.as_ref().map_or(0, |t| t.len()) as u64 + 1);
        assert!(large.steps <= bound, "{} > {bound}", large.steps);
    }

    #[test]
    fn a_four_mebibyte_uri_is_matched_in_one_pass() {
        // Quadratic matching would need ~10^13 steps here; linear needs a few
        // million per template state.
        let uri = almost(4 * 1024 * 1024);
        for template in ["t://{+a}{+b}/end", "t://{a}/{b}/{c}", "t://{+path}"] {
            let run = UriTemplate::compile(template).run(&uri);
            assert!(run.steps <= 8 * uri.len() as u64, "{template}: {run:?}");
        }
        assert!(UriTemplate::compile("t://{+path}").matches(&uri));
    }
}
