//! The one scrubber of known secrets. Text that came from outside (an error
//! body of the Metal API or of Direktiv, an event's fields) passes through
//! [`Scrubber`] wherever it leaves the receiver: every log line, the stdout of
//! `--dry-run` and `--check`, and the message of each `equinix.receiver.error`
//! CloudEvent. An upstream that echoes a token (a proxy or a debug endpoint
//! can) then shows `[REDACTED]` instead.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this many bytes are not scrubbed: replacing every
/// occurrence of a two-letter token would mangle every line. The receiver
/// never prints one itself all the same.
pub(crate) const MIN_SCRUBBED_LEN: usize = 6;

/// Replaces every occurrence of the configured secrets with `[REDACTED]`: as
/// written, percent-encoded (any byte as `%XX`, either case, as a proxy
/// echoing a URL writes it) or backslash-escaped (`\"`, `\\`, `\/`, as JSON and
/// `Debug` write them). Built once from every configured secret
/// (the receiver binary passes its `Settings::secrets`). `Debug` shows
/// only how many secrets it holds.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<SecretString>,
}

impl Scrubber {
    /// A scrubber of `secrets`; those shorter than 6 bytes are
    /// left out.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let mut kept: Vec<SecretString> = Vec::new();
        for secret in secrets {
            let text = secret.expose_secret();
            let known = kept.iter().any(|k| k.expose_secret() == text);
            if text.len() >= MIN_SCRUBBED_LEN && !known {
                kept.push(secret.clone());
            }
        }
        kept.sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
        Self { secrets: kept }
    }

    /// `text` with every secret replaced (borrowed when there was none).
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.scrub_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // A match starts and ends on character boundaries (it is ASCII
            // escapes or the secret's own whole characters), so this is UTF-8.
            Cow::Owned(bytes) => Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// [`Scrubber::scrub`] for bytes (a formatted log line).
    pub fn scrub_bytes<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        if self.secrets.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out: Option<Vec<u8>> = None;
        let (mut at, mut copied) = (0, 0);
        while at < text.len() {
            let end = self
                .secrets
                .iter()
                .find_map(|secret| match_at(text, at, secret.expose_secret().as_bytes()));
            match end {
                Some(end) => {
                    let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                    out.extend_from_slice(&text[copied..at]);
                    out.extend_from_slice(REDACTED.as_bytes());
                    at = end;
                    copied = end;
                }
                None => at += 1,
            }
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut out) => {
                out.extend_from_slice(&text[copied..]);
                Cow::Owned(out)
            }
        }
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Where a match of `secret` that starts at `at` ends (the longest one), if
/// `text` holds one there. Each byte of the secret may appear as itself, as
/// `%XX` or, for `"`, `\` and `/`, after a backslash.
fn match_at(text: &[u8], at: usize, secret: &[u8]) -> Option<usize> {
    // Most positions fail on their first byte: decide those without allocating.
    let first = *text.get(at)?;
    if secret.first() != Some(&first) && first != b'%' && first != b'\\' {
        return None;
    }
    // The ends reachable so far; more than one only when a byte matches both
    // as itself and as an escape, so this stays tiny.
    let mut ends = vec![at];
    let mut next = Vec::new();
    for &want in secret {
        next.clear();
        for &i in &ends {
            let rest = &text[i..];
            if rest.first() == Some(&want) {
                next.push(i + 1);
            }
            if let [b'%', hi, lo, ..] = rest
                && hex_value(*hi, *lo) == Some(want)
            {
                next.push(i + 3);
            }
            if let [b'\\', escaped, ..] = rest
                && *escaped == want
                && matches!(want, b'"' | b'\\' | b'/')
            {
                next.push(i + 2);
            }
        }
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            return None;
        }
        std::mem::swap(&mut ends, &mut next);
    }
    ends.into_iter().max()
}

/// The byte two hex digits (either case) stand for.
fn hex_value(hi: u8, lo: u8) -> Option<u8> {
    let digit = |d: u8| char::from(d).to_digit(16);
    let value = digit(hi)? * 16 + digit(lo)?;
    u8::try_from(value).ok()
}

/// Standard output through the scrubber, a line at a time: `--dry-run`'s
/// CloudEvents and `--check`'s summary.
#[derive(Debug, Clone)]
pub struct ScrubbedStdout {
    scrubber: Arc<Scrubber>,
}

impl ScrubbedStdout {
    /// Stdout, scrubbed of `scrubber`'s secrets.
    pub fn new(scrubber: Arc<Scrubber>) -> Self {
        Self { scrubber }
    }

    /// Writes `line` (scrubbed) and a newline, then flushes.
    pub fn write_line(&self, line: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", self.scrubber.scrub(line))?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "metal-s3cr3t/token+42";

    fn scrubber(secrets: &[&str]) -> Scrubber {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Scrubber::new(&secrets)
    }

    #[test]
    fn every_occurrence_is_replaced() {
        let s = scrubber(&[TOKEN]);
        assert_eq!(
            s.scrub(&format!("token {TOKEN} and again {TOKEN}.")),
            "token [REDACTED] and again [REDACTED]."
        );
        assert_eq!(s.scrub(TOKEN), REDACTED);
    }

    #[test]
    fn percent_encoded_and_escaped_forms_are_replaced() {
        let s = scrubber(&[TOKEN, "say\"hi\\there"]);
        for (text, expected) in [
            // Only the reserved characters encoded, as a query string has them.
            ("?t=metal-s3cr3t%2Ftoken%2B42&x", "?t=[REDACTED]&x"),
            // Lower-case hex.
            ("?t=metal-s3cr3t%2ftoken%2b42", "?t=[REDACTED]"),
            // Every byte encoded.
            (
                "%6D%65%74%61%6C%2D%73%33%63%72%33%74%2F%74%6F%6B%65%6E%2B%34%32",
                REDACTED,
            ),
            // JSON escaping of `/`, `"` and `\`.
            (
                "{\"t\":\"metal-s3cr3t\\/token+42\"}",
                "{\"t\":\"[REDACTED]\"}",
            ),
            ("msg=\"say\\\"hi\\\\there\"", "msg=\"[REDACTED]\""),
        ] {
            assert_eq!(s.scrub(text), expected, "{text}");
        }
    }

    #[test]
    fn text_without_a_secret_is_borrowed_unchanged() {
        let s = scrubber(&[TOKEN]);
        let text = "metal-s3cr3t/token+4 is almost it; %2F and \\\" are not";
        assert!(matches!(s.scrub(text), Cow::Borrowed(t) if t == text));
        let none = Scrubber::default();
        assert!(matches!(none.scrub(TOKEN), Cow::Borrowed(_)));
    }

    #[test]
    fn the_longest_secret_wins_and_short_ones_are_left_alone() {
        let s = scrubber(&["abcdef", "abcdefghij", "abc", ""]);
        assert_eq!(
            s.scrub("abcdefghij abcdefg abc"),
            "[REDACTED] [REDACTED]g abc"
        );
        assert_eq!(format!("{s:?}"), "Scrubber { secrets: 2 }");
    }

    #[test]
    fn unicode_around_and_inside_secrets_stays_valid() {
        let s = scrubber(&["päss-wört"]);
        assert_eq!(s.scrub("ü päss-wört ü"), "ü [REDACTED] ü");
        assert_eq!(s.scrub("p%C3%A4ss-w%C3%B6rt"), REDACTED);
        assert_eq!(s.scrub("päss-wör"), "päss-wör");
    }

    #[test]
    fn a_secret_with_percent_signs_is_found_encoded_or_not() {
        let s = scrubber(&["100%25off"]);
        assert_eq!(s.scrub("a 100%25off b"), "a [REDACTED] b");
        assert_eq!(s.scrub("a 100%2525off b"), "a [REDACTED] b");
    }
}
