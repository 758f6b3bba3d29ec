//! The `state` section: where the dedupe state and the dead letters live.

use std::path::PathBuf;
use std::time::Duration;

use super::Overrides;
use super::tree::Node;
use super::walker::Walker;
use crate::settings::StateSettings;

impl Walker<'_> {
    pub(super) fn state(&mut self, node: Option<&Node>, overrides: Overrides) -> StateSettings {
        let mut section = self.open("state", node);
        let state_path = section.get("path");
        let overlap = section.get("overlap");
        let dead_letter = section.get("deadLetterPath");
        let dead_letter_max = section.get("deadLetterMax");
        self.close(section);

        let path = self.optional_string(&state_path).map(PathBuf::from);
        if let Some(p) = &path
            && p.is_dir()
        {
            self.problem(
                &state_path.path,
                state_path.line(),
                format!(
                    "`{}` is a directory: give the path of a file, e.g. `{}`",
                    p.display(),
                    p.join("state.json").display()
                ),
            );
        }
        let overlap = self.duration(&overlap, Duration::from_secs(600), false);
        let dead_letter_path = self.optional_string(&dead_letter).map(PathBuf::from);
        if let Some(p) = &dead_letter_path {
            if p.is_dir() {
                self.problem(
                    &dead_letter.path,
                    dead_letter.line(),
                    format!(
                        "`{}` is a directory: give the path of a file, e.g. `{}`",
                        p.display(),
                        p.join("dead-letter.jsonl").display()
                    ),
                );
            } else if path.as_ref() == Some(p) {
                self.problem(
                    &dead_letter.path,
                    dead_letter.line(),
                    "is the state file itself: give the dead letters a file of their own, or \
                     leave the key out to keep them beside the state",
                );
            }
        }
        let dead_letter_max = self.integer(
            &dead_letter_max,
            receiver_engine::DeadLetters::DEFAULT_MAX,
            1,
            receiver_engine::DeadLetters::MAX_MAX,
        );
        StateSettings {
            path,
            overlap,
            dead_letter_path,
            dead_letter_max,
            reset_corrupt: overrides.reset_state,
        }
    }
}
