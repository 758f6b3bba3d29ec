//! `equinix.eventTypes`: which Metal event types are delivered, as glob
//! patterns (`provisioning.*`, `instance.deleted`).

/// The event types to deliver. The default (no pattern) delivers every type.
///
/// A pattern matches a whole type, case-sensitively: `*` stands for any run
/// of characters (dots included, so `provisioning.*` matches
/// `provisioning.110`), `?` for exactly one character; everything else
/// stands for itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypes {
    /// Never empty unless every type is delivered.
    patterns: Vec<String>,
}

impl EventTypes {
    /// Only types that match at least one of `patterns` (each non-empty).
    /// No pattern at all means every type.
    pub fn new(patterns: Vec<String>) -> Self {
        debug_assert!(patterns.iter().all(|p| !p.is_empty()));
        Self { patterns }
    }

    /// Every type is delivered.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether an event of type `ty` is delivered.
    pub fn matches(&self, ty: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|p| glob_match(p, ty))
    }
}

/// Whether `text` is matched by `pattern` as a whole: `*` any run of
/// characters, `?` one character. Linear backtracking over the last `*`, so
/// the cost is at most the product of the two lengths.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and where in the
    // text that `*` currently stops.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
            }
            Some(b'?') => {
                pi += 1;
                ti += char_len(t[ti]);
            }
            // UTF-8 is prefix-free: matching byte by byte matches whole
            // characters.
            Some(&b) if b == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more character, and retry.
                Some((resume, stop)) => {
                    let stop = stop + char_len(t[stop]);
                    star = Some((resume, stop));
                    pi = resume;
                    ti = stop;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// The length of the UTF-8 character that starts with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run_including_dots_and_nothing() {
        for (pattern, text) in [
            ("provisioning.*", "provisioning.110"),
            ("provisioning.*", "provisioning."),
            ("provisioning*", "provisioning.110.a.b"),
            ("*", "instance.deleted"),
            ("*", ""),
            ("*.deleted", "instance.deleted"),
            ("*.deleted", "ssh_key.deleted"),
            ("a*b*c", "aXXbYYbc"),
            ("*a*", "banana"),
            ("**", "x"),
            ("instance.deleted", "instance.deleted"),
        ] {
            assert!(glob_match(pattern, text), "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_pattern_matches_the_whole_type_and_is_case_sensitive() {
        for (pattern, text) in [
            ("provisioning.*", "provisioning"),
            ("provisioning.*", "reprovisioning.110"),
            ("instance.deleted", "instance.deleted.late"),
            ("instance.deleted", "instance.delete"),
            ("Provisioning.*", "provisioning.110"),
            ("*.deleted", "instance.deleted2"),
            ("a*b*c", "aXXbYYbd"),
            ("", "x"),
        ] {
            assert!(!glob_match(pattern, text), "{pattern} !~ {text}");
        }
    }

    #[test]
    fn question_mark_is_exactly_one_character_even_beyond_ascii() {
        assert!(glob_match("provisioning.1?0", "provisioning.110"));
        assert!(!glob_match("provisioning.1?0", "provisioning.10"));
        assert!(!glob_match("provisioning.1?0", "provisioning.1100"));
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("*é", "café"));
        assert!(glob_match("c*?", "café"));
        assert!(!glob_match("caf??", "café"));
    }

    #[test]
    fn many_stars_cost_no_more_than_the_product_of_lengths() {
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "a*".repeat(50));
        assert!(!glob_match(&pattern, &text));
    }

    #[test]
    fn no_pattern_means_every_type_and_any_pattern_may_match() {
        assert!(EventTypes::default().matches("anything.at.all"));
        let types = EventTypes::new(vec!["provisioning.*".into(), "instance.deleted".into()]);
        assert!(types.matches("provisioning.104"));
        assert!(types.matches("instance.deleted"));
        assert!(!types.matches("instance.created"));
        assert!(!types.is_all());
    }
}
