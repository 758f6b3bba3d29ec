//! The config loader: a YAML file, the environment and the command-line flags
//! become validated [`Settings`], or a list of every problem found.
//!
//! The file is parsed into a generic tree of nodes that remember their line
//! ([`tree`]), then each section is read by its own file through a section
//! reader that records the keys asked for ([`section`]), so one pass reports
//! every unknown key, wrong type and bad value at once instead of stopping at
//! the first.
//!
//! Secrets come from, in order of precedence: the environment
//! (`METAL_AUTH_TOKEN`, `DIREKTIV_TOKEN`), a token file (`*TokenFile`, `tokenFile`)
//! and the inline value ([`secrets`]). The environment is passed in as a
//! function so tests never touch the process environment.

mod direktiv;
mod equinix;
mod file;
mod log;
mod secrets;
mod section;
mod server;
mod state;
mod summary;
#[cfg(test)]
mod tests;
mod tree;
mod units;
mod urls;
mod values;
mod walker;

use std::fmt;
use std::path::Path;

pub(crate) use self::summary::summary;
pub(crate) use self::units::format_byte_size;
use self::walker::Walker;
use crate::settings::Settings;

/// One thing wrong with the config, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The dotted key path (`direktiv.endpoint`), or `None` for the file itself.
    pub(crate) key: Option<String>,
    /// The 1-based line in the file, when known.
    pub(crate) line: Option<u64>,
    /// What is wrong and how to fix it.
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, self.line) {
            (Some(key), Some(line)) => write!(f, "{key} (line {line}): {}", self.message),
            (Some(key), None) => write!(f, "{key}: {}", self.message),
            (None, Some(line)) => write!(f, "line {line}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// What the command line adds to the config file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides {
    /// `--reset-state`: start fresh when the state file is corrupt.
    pub(crate) reset_state: bool,
}

/// A loaded config: the settings, and warnings worth logging at startup.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The validated settings.
    pub(crate) settings: Settings,
    /// Things that are allowed but probably not what was meant. They never
    /// contain a secret.
    pub(crate) warnings: Vec<String>,
}

/// Reads and validates the config file at `path`.
///
/// `env` looks up an environment variable (`|name| std::env::var(name).ok()`
/// in production). Every problem found is returned, not only the first.
pub(crate) fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: Overrides,
) -> Result<Loaded, Vec<Problem>> {
    let bytes =
        file::read_config_file(path).map_err(|message| vec![file::file_problem(message)])?;
    load_bytes(&bytes, env, overrides)
}

/// Validates a config given as bytes (the contents of the file).
pub(crate) fn load_bytes(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    overrides: Overrides,
) -> Result<Loaded, Vec<Problem>> {
    let root = file::parse_yaml(bytes).map_err(|problem| vec![problem])?;
    let mut walker = Walker::new(env);
    let settings = walker.settings(&root, overrides);
    match settings {
        Some(settings) if walker.problems.is_empty() => Ok(Loaded {
            settings,
            warnings: walker.warnings,
        }),
        _ => {
            // The walk follows the sections' fixed order; the report follows
            // the file, and what has no line (a missing key) comes last.
            let mut problems = walker.problems;
            problems.sort_by_key(|problem| (problem.line.is_none(), problem.line));
            Err(problems)
        }
    }
}
