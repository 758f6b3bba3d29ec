//! Reading the config file: its bytes from disk, then one YAML document of
//! sections, with every failure turned into a sentence a person can act on.

use std::path::Path;

use serde_saphyr::Spanned;

use super::Problem;
use super::tree::{Node, Value, known_line};
use crate::small_file::{self, SmallFileError};

/// A config file larger than this is refused (a config is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A problem with the file as a whole.
pub(super) fn file_problem(message: String) -> Problem {
    Problem {
        key: None,
        line: None,
        message,
    }
}

/// Reads the config file, turning every IO failure into a sentence a person
/// can act on.
pub(super) fn read_config_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    small_file::read(path, MAX_CONFIG_BYTES).map_err(|err| match err {
        SmallFileError::NotFound => format!(
            "config file `{shown}` does not exist: give the path of the YAML config file, \
             e.g. `equinix-receiver /config/config.yaml`"
        ),
        SmallFileError::Directory => format!(
            "`{shown}` is a directory, not a config file: give the path of the YAML file inside \
             it, e.g. `{}`",
            path.join("config.yaml").display()
        ),
        SmallFileError::TooLarge { .. } => {
            format!("config file `{shown}` is larger than 1 MiB: is this really the YAML config?")
        }
        other => format!("config file `{shown}` {other}: give the path of the YAML file"),
    })
}

/// Decodes the bytes as UTF-8 and parses them as one YAML document.
pub(super) fn parse_yaml(bytes: &[u8]) -> Result<Node, Problem> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(file_problem(
            "the config file is UTF-16 text: save it as UTF-8".to_owned(),
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let valid = &bytes[..err.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let column = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        Problem {
            key: None,
            line: Some(line),
            message: format!(
                "the config file is not UTF-8 text (invalid byte at column {column}): save it as \
                 UTF-8"
            ),
        }
    })?;
    let is_blank = text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
    if is_blank {
        return Err(empty_file_problem());
    }
    let options = serde_saphyr::options! { with_snippet: false };
    let root: Spanned<Value> =
        serde_saphyr::from_str_with_options(text, options).map_err(|err| yaml_problem(&err))?;
    let root = Node::from(root);
    match root.value {
        Value::Map(_) => Ok(root),
        Value::Null => Err(empty_file_problem()),
        ref other => Err(Problem {
            key: None,
            line: known_line(root.line),
            message: format!(
                "the config file must be a mapping of sections (`equinix:`, `direktiv:`, ...), \
                 got {}",
                other.kind()
            ),
        }),
    }
}

fn empty_file_problem() -> Problem {
    file_problem(
        "the config file is empty: it needs at least `equinix.organizationId`, an Equinix Metal \
         token and `direktiv.endpoint` (see docs/configuration.md)"
            .to_owned(),
    )
}

fn yaml_problem(err: &serde_saphyr::Error) -> Problem {
    let location = err.location().filter(|loc| loc.line() > 0);
    let mut message = err.to_string();
    // The rendered message may end with its own location; ours goes up front.
    if let Some(index) = message.find(" at line ") {
        message.truncate(index);
    }
    let message = message.trim().trim_end_matches('.').to_owned();
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        let line = location.map(|loc| loc.line());
        let message = format!("key `{key}` is given twice in the same section: keep one");
        return Problem {
            key: None,
            line,
            message,
        };
    }
    match location {
        Some(loc) => Problem {
            key: None,
            line: Some(loc.line()),
            message: format!("YAML syntax error at column {}: {message}", loc.column()),
        },
        None => file_problem(format!("YAML syntax error: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, load, no_env};
    use super::super::{Overrides, load_bytes};

    #[test]
    fn a_file_that_is_not_a_config_is_reported() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "is empty"),
            (b"# only a comment\n\n", "is empty"),
            (b"- a\n- b\n", "got a list"),
            (b"just text", "got a string"),
            (b"equinix:\n  organizationId: \xff\xfe\n", "not UTF-8"),
            (b"equinix: [\n", "YAML syntax error"),
        ];
        for (bytes, needle) in cases {
            let found = load_bytes(bytes, &no_env, Overrides::default()).unwrap_err();
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].to_string().contains(needle), "{needle}: {found:?}");
        }
    }

    #[test]
    fn syntax_errors_carry_a_line_and_column() {
        let found = load("equinix:\n  organizationId: x\n   bad: indent: here\n").unwrap_err();
        assert_eq!(found[0].line, Some(3), "{found:?}");
        assert!(found[0].message.contains("column"), "{found:?}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let found = load(&format!("{MINIMAL}log:\n  level: info\n  level: debug\n")).unwrap_err();
        assert_eq!(
            found[0].to_string(),
            "line 8: key `level` is given twice in the same section: keep one"
        );
    }
}
