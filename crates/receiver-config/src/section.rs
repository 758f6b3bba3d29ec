//! The section reader: a section hands out its values by key and records
//! every key it was asked for, so the keys it was given but never asked for
//! are the unknown ones. Each key is spelled once, where it is read; there is
//! no separate list of keys to keep in step.

use super::Problem;
use super::tree::{Node, known_line};

/// One mapping of the file (`equinix:`, or the top level) being read.
///
/// Ask for every key before [`finish`](Self::finish): a key present in the
/// file but never asked for is reported as unknown.
pub(super) struct Section<'n> {
    /// The dotted path of the section, `""` for the top level.
    path: &'static str,
    entries: &'n [(String, u64, Node)],
    /// The keys asked for, in the order first asked: the order they are
    /// listed in when an unknown key is reported.
    asked: Vec<&'static str>,
    /// Where this section stands among the others, and where its unknown
    /// keys go among the problems.
    place: Place,
}

/// Where a section's unknown keys are reported: among the problems found
/// before its values were read, after those of the sections opened before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Place {
    /// How many problems had been found when the section was opened.
    pub(super) problems_before: usize,
    /// How many sections had been opened before it.
    pub(super) opened_before: usize,
}

/// One key of a section: its dotted path, and its value when the file has
/// the key.
pub(super) struct Field<'n> {
    /// The dotted key path (`equinix.perPage`), as problems name it.
    pub(super) path: String,
    /// The value, `None` when the key is absent.
    pub(super) node: Option<&'n Node>,
}

impl Field<'_> {
    /// The line of the value, 0 when the key is absent.
    pub(super) fn line(&self) -> u64 {
        self.node.map_or(0, |node| node.line)
    }
}

/// A section read to the end: the keys it asked for and those it was given
/// but never asked for.
pub(super) struct Finished {
    path: &'static str,
    asked: Vec<&'static str>,
    /// Each unknown key with its line, in file order.
    unknown: Vec<(String, u64)>,
    place: Place,
}

impl<'n> Section<'n> {
    /// A section over `entries`, placed at `place`.
    pub(super) fn new(
        path: &'static str,
        entries: &'n [(String, u64, Node)],
        place: Place,
    ) -> Self {
        Section {
            path,
            entries,
            asked: Vec::new(),
            place,
        }
    }

    /// The key `key` of this section, recorded as known.
    pub(super) fn get(&mut self, key: &'static str) -> Field<'n> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        Field {
            path: join(self.path, key),
            node: self
                .entries
                .iter()
                .find(|(name, _, _)| name == key)
                .map(|(_, _, node)| node),
        }
    }

    /// Ends the reading: every key present but never asked for is unknown.
    pub(super) fn finish(self) -> Finished {
        let unknown = self
            .entries
            .iter()
            .filter(|(name, _, _)| !self.asked.contains(&name.as_str()))
            .map(|(name, line, _)| (name.clone(), *line))
            .collect();
        Finished {
            path: self.path,
            asked: self.asked,
            unknown,
            place: self.place,
        }
    }
}

impl Finished {
    /// Every key this section knows, dotted (`direktiv.endpoint`).
    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.asked.iter().map(|key| join(self.path, key))
    }

    /// The dotted path of the section, `""` for the top level.
    #[cfg(test)]
    pub(super) fn path(&self) -> &str {
        self.path
    }
}

/// Adds a problem for every unknown key of `sections` to `problems`, each
/// with a suggestion: the closest key of its own section, else the closest
/// key of another section, else the list of the keys allowed. A section's
/// problems go where it was opened, as if they had been found right then.
pub(super) fn report_unknown_keys(sections: &[Finished], problems: &mut Vec<Problem>) {
    let mut found: Vec<(Place, Vec<Problem>)> = sections
        .iter()
        .map(|section| {
            let unknown = section
                .unknown
                .iter()
                .map(|(key, line)| unknown_key(section, key, *line, sections))
                .collect();
            (section.place, unknown)
        })
        .collect();
    // From the last place to the first, so that each index still holds.
    found.sort_by_key(|(place, _)| *place);
    for (place, unknown) in found.into_iter().rev() {
        let at = place.problems_before;
        problems.splice(at..at, unknown);
    }
}

/// The problem for the unknown key `key` of `section`.
fn unknown_key(section: &Finished, key: &str, line: u64, sections: &[Finished]) -> Problem {
    let message = if let Some(best) = suggest(key, &section.asked) {
        format!("unknown key: did you mean `{}`?", join(section.path, best))
    } else if let Some(home) = sections
        .iter()
        .filter(|other| !other.path.is_empty() && other.path != section.path)
        .find_map(|other| suggest(key, &other.asked).map(|best| join(other.path, best)))
    {
        format!("unknown key here: did you mean `{home}`?")
    } else {
        format!(
            "unknown key: the keys allowed here are {}",
            list(&section.asked)
        )
    };
    Problem {
        key: Some(join(section.path, key)),
        line: known_line(line),
        message,
    }
}

/// Finds the closest known key to an unknown one.
pub(super) fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let normalise = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let wanted = normalise(unknown);
    if let Some(same) = known.iter().find(|k| normalise(k) == wanted) {
        return Some(same);
    }
    known
        .iter()
        .map(|k| (k, strsim::jaro_winkler(&wanted, &normalise(k))))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| *k)
}

/// Formats key names as a list: `a`, `b`, `c`.
fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Joins a section path and a key.
fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, keys_and_lines, minimal_with, problems};

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let cases = [
            (
                "equinix",
                "organisationId: x",
                "did you mean `equinix.organizationId`?",
            ),
            (
                "equinix",
                "pollinterval: 10s",
                "did you mean `equinix.pollInterval`?",
            ),
            (
                "direktiv",
                "eventOnError: true",
                "did you mean `direktiv.event-on-error`?",
            ),
            (
                "direktiv",
                "insecureSkipVerfy: true",
                "did you mean `direktiv.insecureSkipVerify`?",
            ),
            (
                "equinix",
                "endpoint: x",
                "did you mean `direktiv.endpoint`?",
            ),
            ("direktiv", "zzz: 1", "the keys allowed here are"),
        ];
        for (section, line, needle) in cases {
            let found = problems(&minimal_with(section, line));
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{line}: {found:?}"
            );
        }
        for (yaml, needle) in [
            (
                format!("{MINIMAL}state:\n  deadLetterMaximum: 5\n"),
                "did you mean `state.deadLetterMax`?",
            ),
            (
                minimal_with("direktiv", "deadLetterPath: /tmp/dl.jsonl"),
                "did you mean `state.deadLetterPath`?",
            ),
        ] {
            let found = problems(&yaml);
            assert!(found.iter().any(|p| p.contains(needle)), "{found:?}");
        }
        let found = problems(&format!("{MINIMAL}loggin:\n  level: info\n"));
        assert!(
            found.iter().any(|p| p.contains("did you mean `log`?")),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_keys_list_the_keys_of_their_section_in_the_documented_order() {
        let cases = [
            (
                "equinix",
                "`organizationId`, `packetAuthToken`, `packetAuthTokenFile`, `apiUrl`, \
                 `pollInterval`, `maxPollInterval`, `coveredPollInterval`, `requestRate`, \
                 `perPage`, `maxPages`, `concurrency`, `levels`, `startFrom`, \
                 `inventoryRefresh`, `timeout`, `sweepTimeout`, `maxResponseSize`, `eventTypes`",
            ),
            (
                "direktiv",
                "`endpoint`, `token`, `tokenFile`, `apikey`, `authHeader`, \
                 `insecureSkipVerify`, `caFile`, `timeout`, `concurrency`, `maxRetries`, \
                 `poisonAfter`, `event-on-error`, `errorEventInterval`, `typePrefix`, `sourcePrefix`",
            ),
            (
                "state",
                "`path`, `overlap`, `deadLetterPath`, `deadLetterMax`, `postgres`",
            ),
            ("log", "`format`, `level`"),
            ("server", "`enabled`, `listen`"),
            (
                "",
                "`equinix`, `direktiv`, `state`, `log`, `server`, `shutdownGrace`",
            ),
        ];
        for (section, allowed) in cases {
            let yaml = match section {
                "equinix" | "direktiv" => minimal_with(section, "zzz: 1"),
                "" => format!("{MINIMAL}zzz: 1\n"),
                _ => format!("{MINIMAL}{section}:\n  zzz: 1\n"),
            };
            let key = if section.is_empty() {
                "zzz".to_owned()
            } else {
                format!("{section}.zzz")
            };
            let found = problems(&yaml);
            assert_eq!(
                found,
                [format!(
                    "{key} (line {}): unknown key: the keys allowed here are {allowed}",
                    yaml.lines().position(|l| l.contains("zzz")).unwrap() + 1
                )],
                "{section}"
            );
        }
    }

    #[test]
    fn a_key_in_the_wrong_section_or_at_the_top_names_its_home() {
        for (yaml, expected) in [
            (
                format!("endpoint: x\n{MINIMAL}"),
                "endpoint (line 1): unknown key here: did you mean `direktiv.endpoint`?",
            ),
            (
                format!("{MINIMAL}log:\n  listen: 0.0.0.0:1\n"),
                "log.listen (line 7): unknown key here: did you mean `server.listen`?",
            ),
            (
                minimal_with("direktiv", "levels: [device]"),
                "direktiv.levels (line 5): unknown key here: did you mean `equinix.levels`?",
            ),
        ] {
            assert_eq!(problems(&yaml), [expected]);
        }
    }

    #[test]
    fn problems_on_one_line_keep_the_order_of_the_walk() {
        // A flow mapping puts several keys on one line: the unknown key of a
        // section comes before the bad values of that section, and the
        // sections follow the walk (the top first, then equinix, direktiv).
        let yaml = "equinix: {organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00, \
                    packetAuthToken: t, perPage: 0, bogus: 1}\n\
                    direktiv: {endpoint: \"ftp://h\", timeout: 1, nope: 2}\n\
                    sever: {listen: x}\n";
        let found = problems(yaml);
        let keys = keys_and_lines(&found);
        assert_eq!(
            keys,
            [
                "equinix.bogus (line 1)",
                "equinix.perPage (line 1)",
                "direktiv.nope (line 2)",
                "direktiv.endpoint (line 2)",
                "direktiv.timeout (line 2)",
                "sever (line 3)",
            ],
            "{found:#?}"
        );
    }
}
