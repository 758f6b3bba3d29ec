//! The walk over the parsed file: each section is read by its own file of
//! this module, and every problem and warning found on the way is collected,
//! so that one pass reports them all.

use std::time::Duration;

use super::Problem;
use super::section::{Finished, Place, Section, report_unknown_keys};
use super::tree::{Node, Value, known_line};
use super::{Overrides, Settings};

/// Walks the parsed tree, collecting problems and warnings.
pub(super) struct Walker<'e> {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<String>,
    /// Looks up an environment variable.
    pub(super) env: &'e dyn Fn(&str) -> Option<String>,
    /// The sections read so far.
    finished: Vec<Finished>,
    /// How many sections have been opened.
    opened: usize,
}

impl<'e> Walker<'e> {
    /// A walker that reads secrets from `env`.
    pub(super) fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Walker {
            problems: Vec::new(),
            warnings: Vec::new(),
            env,
            finished: Vec::new(),
            opened: 0,
        }
    }
}

impl Walker<'_> {
    pub(super) fn problem(&mut self, key: &str, line: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            key: Some(key.to_owned()),
            line: known_line(line),
            message: message.into(),
        });
    }

    pub(super) fn wrong_type(&mut self, key: &str, node: &Node, expected: &str) {
        let message = format!("must be {expected}, got {}", node.value.kind());
        self.problem(key, node.line, message);
    }

    /// Opens the section at `path`: a mapping, or nothing (an empty section).
    pub(super) fn open<'n>(&mut self, path: &'static str, node: Option<&'n Node>) -> Section<'n> {
        let entries: &[_] = match node.map(|n| (&n.value, n)) {
            None | Some((Value::Null, _)) => &[],
            Some((Value::Map(entries), _)) => entries,
            Some((_, node)) => {
                self.wrong_type(path, node, "a mapping of keys");
                &[]
            }
        };
        let place = Place {
            problems_before: self.problems.len(),
            opened_before: self.opened,
        };
        self.opened += 1;
        Section::new(path, entries, place)
    }

    /// Closes a section once every key of it has been asked for.
    pub(super) fn close(&mut self, section: Section<'_>) {
        self.finished.push(section.finish());
    }

    /// The whole file.
    pub(super) fn settings(&mut self, root: &Node, overrides: Overrides) -> Option<Settings> {
        let mut top = self.open("", Some(root));
        let equinix = top.get("equinix");
        let direktiv = top.get("direktiv");
        let state = top.get("state");
        let log = top.get("log");
        let server = top.get("server");
        let shutdown_grace = top.get("shutdownGrace");
        self.close(top);

        let equinix = self.equinix(equinix.node);
        let direktiv = self.direktiv(direktiv.node);
        let state = self.state(state.node, overrides);
        let log = self.log(log.node);
        let server = self.server(server.node);
        let shutdown_grace = self.duration(&shutdown_grace, Duration::from_secs(20), true);
        report_unknown_keys(&self.finished, &mut self.problems);
        Some(Settings {
            equinix: equinix?,
            direktiv: direktiv?,
            state,
            log,
            server,
            shutdown_grace,
        })
    }
}

/// Every key the loader knows, dotted (`direktiv.endpoint`): the keys each
/// section asks for when reading an empty file.
#[cfg(test)]
pub(super) fn known_keys() -> Vec<String> {
    let no_env = |_: &str| None;
    let mut walker = Walker::new(&no_env);
    let empty = Node {
        value: Value::Map(Vec::new()),
        line: 1,
    };
    walker.settings(&empty, Overrides::default());
    let sections: Vec<&str> = walker.finished.iter().map(Finished::path).collect();
    walker
        .finished
        .iter()
        .flat_map(Finished::keys)
        .filter(|key| !sections.contains(&key.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{MINIMAL, keys_and_lines, load, problems};

    #[test]
    fn shutdown_grace_may_be_zero() {
        let s = load(&format!("{MINIMAL}shutdownGrace: 0s\n"))
            .unwrap()
            .settings;
        assert_eq!(s.shutdown_grace, Duration::ZERO);
    }

    #[test]
    fn missing_required_keys_are_all_reported() {
        let found = problems("equinix:\ndirektiv:\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("equinix.organizationId"));
        assert!(found[1].contains("METAL_AUTH_TOKEN"));
        assert!(found[2].contains("direktiv.endpoint"));
    }

    #[test]
    fn problems_come_in_file_order_and_missing_keys_last() {
        // The sections are walked in a fixed order (equinix first); the
        // report follows the file.
        let found = problems(
            "direktiv:\n  timeout: 10\nlog:\n  level: chatty\nequinix:\n  perPage: 5000\n",
        );
        let keys = keys_and_lines(&found);
        assert_eq!(
            keys,
            [
                "direktiv.timeout (line 2)",
                "log.level (line 4)",
                "equinix.perPage (line 6)",
                "equinix.organizationId",
                "equinix.packetAuthToken",
                "direktiv.endpoint",
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn the_known_keys_are_those_the_sections_read() {
        let keys = super::known_keys();
        assert_eq!(keys.len(), 46, "{keys:?}");
        assert_eq!(
            keys[..3],
            [
                "shutdownGrace",
                "equinix.organizationId",
                "equinix.packetAuthToken"
            ]
        );
        for key in [
            "direktiv.event-on-error",
            "state.deadLetterMax",
            "state.postgres.leaseDuration",
            "log.level",
            "server.listen",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}: {keys:?}");
        }
    }
}
