//! The equinix-receiver's `config.yaml`: a loader that turns the file, the
//! environment and the command-line flags into validated [`Settings`], or into
//! a list of every problem found, each with its key, its line and, for a
//! misspelt key, a suggestion.
//!
//! ```
//! use receiver_config::{Overrides, load_bytes};
//!
//! let yaml = "\
//! equinix:
//!   organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00
//!   packetAuthToken: metal-token
//! direktiv:
//!   endpoint: https://direktiv.example/api/namespaces/ops/broadcast
//!   timout: 5s
//! ";
//! // The environment is a function: here, an empty one.
//! let problems = load_bytes(yaml.as_bytes(), &|_| None, Overrides::default()).unwrap_err();
//! assert_eq!(
//!     problems[0].to_string(),
//!     "direktiv.timout (line 6): unknown key: did you mean `direktiv.timeout`?"
//! );
//!
//! let fixed = yaml.replace("timout", "timeout");
//! let loaded = load_bytes(fixed.as_bytes(), &|_| None, Overrides::default()).unwrap();
//! assert_eq!(loaded.settings.direktiv.timeout.as_secs(), 5);
//! println!("config OK: {}", receiver_config::summary(&loaded.settings));
//! ```
//!
//! The file is parsed into a generic tree of nodes that remember their line
//! (`tree`), then each section is read by its own file through a section
//! reader that records the keys asked for (`section`), so one pass reports
//! every unknown key, wrong type and bad value at once instead of stopping at
//! the first.
//!
//! Secrets come from, in order of precedence: the environment
//! (`METAL_AUTH_TOKEN`, `DIREKTIV_TOKEN`), a token file (`*TokenFile`, `tokenFile`)
//! and the inline value (`secrets`). The environment is passed in as a
//! function so tests never touch the process environment. Files the config
//! names are read only when they are regular files under a size cap.
//!
//! The crate reads and validates; it never opens the state, connects
//! anywhere, logs or prints. [`mountinfo`] answers whether a directory lies
//! on a container's throw-away root filesystem, for the durability check of
//! `state.path`.

mod direktiv;
mod equinix;
mod file;
mod log;
pub mod mountinfo;
mod secrets;
mod section;
mod server;
pub mod settings;
mod small_file;
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

pub use self::equinix::FAST_POLL_ENV;
pub use self::settings::Settings;
pub use self::summary::summary;
use self::walker::Walker;

/// One thing wrong with the config, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key path (`direktiv.endpoint`), or `None` for the file itself.
    pub key: Option<String>,
    /// The 1-based line in the file, when known.
    pub line: Option<u64>,
    /// What is wrong and how to fix it.
    pub message: String,
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
pub struct Overrides {
    /// `--reset-state`: start fresh when the state file is corrupt.
    pub reset_state: bool,
}

/// A loaded config: the settings, and warnings worth logging at startup.
#[derive(Debug)]
pub struct Loaded {
    /// The validated settings.
    pub settings: Settings,
    /// Things that are allowed but probably not what was meant. They never
    /// contain a secret.
    pub warnings: Vec<String>,
}

/// Reads and validates the config file at `path`.
///
/// `env` looks up an environment variable (`|name| std::env::var(name).ok()`
/// in production). Every problem found is returned, not only the first.
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: Overrides,
) -> Result<Loaded, Vec<Problem>> {
    let bytes =
        file::read_config_file(path).map_err(|message| vec![file::file_problem(message)])?;
    load_bytes(&bytes, env, overrides)
}

/// Validates a config given as bytes (the contents of the file).
pub fn load_bytes(
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
