//! The readers of one value: strings, booleans, whole numbers, durations,
//! sizes and URLs. Each reports what is wrong with its key and line, and
//! returns the default (or nothing) so that the walk goes on.

use std::time::Duration;

use url::Url;

use super::section::Field;
use super::tree::{Node, Value};
use super::units::{format_byte_size, parse_byte_size, parse_duration};
use super::urls::without_userinfo;
use super::walker::Walker;

/// The smallest `equinix.maxResponseSize`: below it an ordinary page fails.
const MIN_RESPONSE_SIZE: u64 = 64 * 1024;
/// The largest `equinix.maxResponseSize`.
const MAX_RESPONSE_SIZE: u64 = 1024 * 1024 * 1024;

impl Walker<'_> {
    pub(super) fn string(&mut self, path: &str, node: &Node) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Null => None,
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                self.wrong_type(path, node, "a string (put the value in quotes)");
                None
            }
            _ => {
                self.wrong_type(path, node, "a string");
                None
            }
        }
    }

    /// A string that counts as unset when empty (tokens and paths, which Helm
    /// templates often render as `""`).
    pub(super) fn optional_string(&mut self, field: &Field<'_>) -> Option<String> {
        let s = self.string(&field.path, field.node?)?;
        let s = s.trim().to_owned();
        (!s.is_empty()).then_some(s)
    }

    /// A string that must not be empty when given.
    pub(super) fn nonempty_string(&mut self, field: &Field<'_>, hint: &str) -> Option<String> {
        let node = field.node?;
        let s = self.string(&field.path, node)?;
        if s.trim().is_empty() {
            self.problem(&field.path, node.line, format!("is empty: {hint}"));
            return None;
        }
        Some(s.trim().to_owned())
    }

    pub(super) fn boolean(&mut self, field: &Field<'_>, default: bool) -> bool {
        let (path, Some(node)) = (field.path.as_str(), field.node) else {
            return default;
        };
        match &node.value {
            Value::Null => default,
            Value::Bool(b) => *b,
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => true,
                "false" | "no" | "off" => false,
                _ => {
                    self.problem(path, node.line, format!("must be true or false, got `{s}`"));
                    default
                }
            },
            _ => {
                self.wrong_type(path, node, "true or false");
                default
            }
        }
    }

    pub(super) fn integer(&mut self, field: &Field<'_>, default: u32, min: u32, max: u32) -> u32 {
        let (path, Some(node)) = (field.path.as_str(), field.node) else {
            return default;
        };
        let n = match &node.value {
            Value::Null => return default,
            Value::Int(n) => *n,
            Value::Str(s) if s.trim().parse::<i128>().is_ok() => {
                self.wrong_type(path, node, "a whole number (without quotes)");
                return default;
            }
            Value::Float(_) => {
                self.wrong_type(path, node, "a whole number");
                return default;
            }
            _ => {
                self.wrong_type(path, node, "a whole number");
                return default;
            }
        };
        match u32::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problem(
                    path,
                    node.line,
                    format!("must be between {min} and {max}, got {n} (the default is {default})"),
                );
                default
            }
        }
    }

    /// A positive, finite number (whole or not); `None` when unset.
    pub(super) fn positive_number(&mut self, field: &Field<'_>, expected: &str) -> Option<f64> {
        let (path, node) = (field.path.as_str(), field.node?);
        let n = match &node.value {
            Value::Null => return None,
            Value::Int(n) => *n as f64,
            Value::Float(n) => *n,
            Value::Str(s) if s.trim().parse::<f64>().is_ok() => {
                self.wrong_type(
                    path,
                    node,
                    &format!("a number (without quotes): {expected}"),
                );
                return None;
            }
            _ => {
                self.wrong_type(path, node, &format!("a number: {expected}"));
                return None;
            }
        };
        if n.is_finite() && n > 0.0 {
            Some(n)
        } else {
            self.problem(
                path,
                node.line,
                format!(
                    "must be greater than zero, got {n}: {expected}; leave it out for no limit"
                ),
            );
            None
        }
    }

    pub(super) fn duration(
        &mut self,
        field: &Field<'_>,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let (path, Some(node)) = (field.path.as_str(), field.node) else {
            return default;
        };
        let text = match &node.value {
            Value::Null => return default,
            Value::Str(s) => s.clone(),
            Value::Int(n) => {
                let message = format!(
                    "a bare number has no unit: write `{n}s` for seconds (or `ms`, `m`, `h`)"
                );
                self.problem(path, node.line, message);
                return default;
            }
            _ => {
                self.wrong_type(path, node, "a duration such as `10s`, `500ms` or `1h30m`");
                return default;
            }
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(path, node.line, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(why) => {
                self.problem(path, node.line, why);
                default
            }
        }
    }

    /// A size in bytes: a whole number of bytes, or a number with a unit
    /// (`64KiB`, `32MiB`, `1GB`), within `MIN_RESPONSE_SIZE..=MAX_RESPONSE_SIZE`.
    pub(super) fn byte_size(&mut self, field: &Field<'_>, default: u64) -> u64 {
        let (path, Some(node)) = (field.path.as_str(), field.node) else {
            return default;
        };
        let parsed = match &node.value {
            Value::Null => return default,
            Value::Int(n) => {
                u64::try_from(*n).map_err(|_| format!("must not be negative, got {n}"))
            }
            Value::Str(s) => parse_byte_size(s),
            _ => {
                self.wrong_type(path, node, "a size such as `32MiB`, `512KiB` or `1GB`");
                return default;
            }
        };
        let message = match parsed {
            Ok(bytes) if (MIN_RESPONSE_SIZE..=MAX_RESPONSE_SIZE).contains(&bytes) => return bytes,
            Ok(bytes) => format!(
                "must be between {} and {}, got {} (the default is {}; a page of 1,000 events is \
                 about 1MB)",
                format_byte_size(MIN_RESPONSE_SIZE),
                format_byte_size(MAX_RESPONSE_SIZE),
                format_byte_size(bytes),
                format_byte_size(default)
            ),
            Err(why) => why,
        };
        self.problem(path, node.line, message);
        default
    }

    /// A list, or one string standing for a list of one. `None` when the key
    /// is absent or null, or (reported) when it is neither.
    pub(super) fn list<'n>(&mut self, field: &Field<'n>, expected: &str) -> Option<Vec<&'n Node>> {
        let node = field.node?;
        match &node.value {
            Value::Null => None,
            Value::Seq(items) => Some(items.iter().collect()),
            Value::Str(_) => Some(vec![node]),
            _ => {
                self.wrong_type(&field.path, node, expected);
                None
            }
        }
    }

    /// An http or https URL with a host. Credentials in it (`user:password@`)
    /// are refused, with `fix` saying where the token goes instead, and no
    /// message ever shows them.
    pub(super) fn http_url(&mut self, field: &Field<'_>, example: &str, fix: &str) -> Option<Url> {
        let node = field.node?;
        let text = self.nonempty_string(field, &format!("set it to a URL such as `{example}`"))?;
        let shown = without_userinfo(&text);
        let message = match Url::parse(&text) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => format!(
                "must be an http or https URL, got scheme `{}` in `{shown}`",
                url.scheme()
            ),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                format!("must be an http or https URL with a host, got `{shown}`")
            }
            // Not even the URL is shown: the password is part of it.
            Ok(url) if !url.username().is_empty() || url.password().is_some() => format!(
                "must not carry credentials (`user:password@` before the host): remove them \
                 from the URL and {fix}"
            ),
            Ok(url) => return Some(url),
            Err(err) => {
                format!("is not a valid URL ({err}): expected e.g. `{example}`, got `{shown}`")
            }
        };
        self.problem(&field.path, node.line, message);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, minimal_with};

    #[test]
    fn yaml_one_one_booleans_and_null_values_are_accepted() {
        let yaml = minimal_with(
            "direktiv",
            "insecureSkipVerify: yes\n  token:\n  event-on-error: \"on\"",
        );
        let d = load(&yaml).unwrap().settings.direktiv;
        assert!(d.insecure_skip_verify && d.event_on_error);
        assert!(d.token.is_none());
    }
}
