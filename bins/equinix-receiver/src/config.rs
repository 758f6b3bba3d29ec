//! The config loader: a YAML file, the environment and the command-line flags
//! become validated [`Settings`], or a list of every problem found.
//!
//! The file is parsed into a generic tree of [`Node`]s that remember their line,
//! then the known keys are walked by hand, so one pass reports every unknown key,
//! wrong type and bad value at once instead of stopping at the first.
//!
//! Secrets come from, in order of precedence: the environment
//! (`METAL_AUTH_TOKEN`, `DIREKTIV_TOKEN`), a token file (`*TokenFile`, `tokenFile`)
//! and the inline value. The environment is passed in as a function so tests
//! never touch the process environment.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use direktiv_broadcast::{Auth, AuthHeader};
use event_dedupe::Baseline;
use metal_cloudevents::MapOptions;
use secrecy::SecretString;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use url::Url;

use crate::event_types::EventTypes;
use crate::settings::{
    DirektivSettings, EquinixSettings, Levels, LogFormat, LogSettings, ServerSettings, Settings,
    StateSettings,
};
use crate::small_file::{self, SmallFileError};

/// The environment variable that holds the Equinix Metal token.
pub(crate) const METAL_TOKEN_ENV: &str = "METAL_AUTH_TOKEN";
/// The environment variable that holds the Direktiv token.
pub(crate) const DIREKTIV_TOKEN_ENV: &str = "DIREKTIV_TOKEN";

/// A config file larger than this is refused (a config is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// A token file larger than this is refused (a token is under 100 bytes).
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;
/// A CA file larger than this is refused (the whole Mozilla bundle is about
/// 220 KB).
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
/// The smallest `equinix.maxResponseSize`: below it an ordinary page fails.
const MIN_RESPONSE_SIZE: u64 = 64 * 1024;
/// The largest `equinix.maxResponseSize`.
const MAX_RESPONSE_SIZE: u64 = 1024 * 1024 * 1024;
/// The longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The default Equinix Metal API base URL.
pub(crate) const DEFAULT_API_URL: &str = "https://api.equinix.com/metal/v1";
/// The default address of the health and metrics server.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:9464";

const TOP_KEYS: &[&str] = &[
    "equinix",
    "direktiv",
    "state",
    "log",
    "server",
    "shutdownGrace",
];
const EQUINIX_KEYS: &[&str] = &[
    "organizationId",
    "packetAuthToken",
    "packetAuthTokenFile",
    "apiUrl",
    "pollInterval",
    "perPage",
    "maxPages",
    "concurrency",
    "levels",
    "startFrom",
    "inventoryRefresh",
    "timeout",
    "sweepTimeout",
    "maxResponseSize",
    "eventTypes",
];
const DIREKTIV_KEYS: &[&str] = &[
    "endpoint",
    "token",
    "tokenFile",
    "apikey",
    "authHeader",
    "insecureSkipVerify",
    "caFile",
    "timeout",
    "concurrency",
    "maxRetries",
    "event-on-error",
    "errorEventInterval",
    "typePrefix",
    "sourcePrefix",
];
const STATE_KEYS: &[&str] = &["path", "overlap", "deadLetterPath", "deadLetterMax"];
const LOG_KEYS: &[&str] = &["format", "level"];
const SERVER_KEYS: &[&str] = &["enabled", "listen"];

/// Every section with its keys, to suggest the right section for a key put in
/// the wrong one.
const SECTIONS: &[(&str, &[&str])] = &[
    ("equinix", EQUINIX_KEYS),
    ("direktiv", DIREKTIV_KEYS),
    ("state", STATE_KEYS),
    ("log", LOG_KEYS),
    ("server", SERVER_KEYS),
];

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
    let bytes = read_config_file(path).map_err(|message| vec![file_problem(message)])?;
    load_bytes(&bytes, env, overrides)
}

/// Validates a config given as bytes (the contents of the file).
pub(crate) fn load_bytes(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    overrides: Overrides,
) -> Result<Loaded, Vec<Problem>> {
    let root = parse_yaml(bytes).map_err(|problem| vec![problem])?;
    let mut walker = Walker {
        problems: Vec::new(),
        warnings: Vec::new(),
        env,
    };
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

fn file_problem(message: String) -> Problem {
    Problem {
        key: None,
        line: None,
        message,
    }
}

/// Reads the config file, turning every IO failure into a sentence a person
/// can act on.
fn read_config_file(path: &Path) -> Result<Vec<u8>, String> {
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

/// A YAML value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    value: Value,
    /// 1-based; 0 when unknown.
    line: u64,
}

/// A generic YAML value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order: the key, the key's line, the value.
    Map(Vec<(String, u64, Node)>),
}

impl Value {
    /// How a value's type is named in messages.
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl From<Spanned<Value>> for Node {
    fn from(spanned: Spanned<Value>) -> Self {
        Node {
            value: spanned.value,
            line: spanned.referenced.line(),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node::from(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let line = key.referenced.line();
            let name = match key.value {
                Value::Str(s) => s,
                Value::Int(n) => n.to_string(),
                Value::Float(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) => "<a list or mapping used as a key>".to_owned(),
            };
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((name, line, Node::from(value)));
        }
        Ok(Value::Map(entries))
    }
}

/// Decodes the bytes as UTF-8 and parses them as one YAML document.
fn parse_yaml(bytes: &[u8]) -> Result<Node, Problem> {
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

fn known_line(line: u64) -> Option<u64> {
    (line > 0).then_some(line)
}

/// Finds the closest known key to an unknown one.
fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
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

/// Where a secret came from, to pick the default auth header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Env,
    File,
    Inline,
    ApiKey,
}

/// Walks the parsed tree, collecting problems and warnings.
struct Walker<'e> {
    problems: Vec<Problem>,
    warnings: Vec<String>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

/// The entries of one mapping section.
type Entries<'n> = &'n [(String, u64, Node)];

impl Walker<'_> {
    fn problem(&mut self, key: &str, line: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            key: Some(key.to_owned()),
            line: known_line(line),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, key: &str, node: &Node, expected: &str) {
        let message = format!("must be {expected}, got {}", node.value.kind());
        self.problem(key, node.line, message);
    }

    /// Reports every key of `entries` not in `known`.
    fn check_keys(&mut self, section: &str, entries: Entries<'_>, known: &[&str]) {
        for (key, line, _) in entries {
            if known.contains(&key.as_str()) {
                continue;
            }
            let path = join(section, key);
            let message = if let Some(best) = suggest(key, known) {
                format!("unknown key: did you mean `{}`?", join(section, best))
            } else if let Some(home) = SECTIONS
                .iter()
                .filter(|(name, _)| *name != section)
                .find_map(|(name, keys)| suggest(key, keys).map(|k| join(name, k)))
                .filter(|_| !section.is_empty() || !TOP_KEYS.contains(&key.as_str()))
            {
                format!("unknown key here: did you mean `{home}`?")
            } else {
                format!("unknown key: the keys allowed here are {}", list(known))
            };
            self.problem(&path, *line, message);
        }
    }

    /// A section: a mapping, or nothing (an empty section).
    fn section<'n>(&mut self, path: &str, node: Option<&'n Node>) -> Entries<'n> {
        match node.map(|n| (&n.value, n)) {
            None | Some((Value::Null, _)) => &[],
            Some((Value::Map(entries), _)) => entries,
            Some((_, node)) => {
                self.wrong_type(path, node, "a mapping of keys");
                &[]
            }
        }
    }

    fn string(&mut self, path: &str, node: &Node) -> Option<String> {
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
    fn optional_string(&mut self, path: &str, node: Option<&Node>) -> Option<String> {
        let s = self.string(path, node?)?;
        let s = s.trim().to_owned();
        (!s.is_empty()).then_some(s)
    }

    /// A string that must not be empty when given.
    fn nonempty_string(&mut self, path: &str, node: Option<&Node>, hint: &str) -> Option<String> {
        let node = node?;
        let s = self.string(path, node)?;
        if s.trim().is_empty() {
            self.problem(path, node.line, format!("is empty: {hint}"));
            return None;
        }
        Some(s.trim().to_owned())
    }

    fn boolean(&mut self, path: &str, node: Option<&Node>, default: bool) -> bool {
        let Some(node) = node else { return default };
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

    fn integer(
        &mut self,
        path: &str,
        node: Option<&Node>,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        let Some(node) = node else { return default };
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

    fn duration(
        &mut self,
        path: &str,
        node: Option<&Node>,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some(node) = node else { return default };
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
    fn byte_size(&mut self, path: &str, node: Option<&Node>, default: u64) -> u64 {
        let Some(node) = node else { return default };
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

    /// An http or https URL with a host. Credentials in it (`user:password@`)
    /// are refused, with `fix` saying where the token goes instead, and no
    /// message ever shows them.
    fn http_url(
        &mut self,
        path: &str,
        node: Option<&Node>,
        example: &str,
        fix: &str,
    ) -> Option<Url> {
        let node = node?;
        let text = self.nonempty_string(
            path,
            Some(node),
            &format!("set it to a URL such as `{example}`"),
        )?;
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
        self.problem(path, node.line, message);
        None
    }

    /// Checks a secret is usable as an HTTP header value, without ever
    /// showing it.
    fn check_secret(&mut self, path: &str, line: u64, secret: &str, source: &str) -> bool {
        if secret.starts_with('<') && secret.ends_with('>') {
            self.problem(
                path,
                line,
                format!("{source} is still a placeholder like `<token>`: put the real token there"),
            );
            return false;
        }
        if !secret.chars().all(|c| c.is_ascii_graphic()) {
            self.problem(
                path,
                line,
                format!(
                    "{source} contains spaces or characters not allowed in an HTTP header: give \
                     the token alone (no `Bearer ` prefix, no quotes)"
                ),
            );
            return false;
        }
        true
    }

    /// Reads a token file: trailing whitespace (the newline of a Kubernetes
    /// Secret) trimmed.
    fn token_file(&mut self, path: &str, line: u64, file: &str) -> Option<String> {
        let bytes = match small_file::read(Path::new(file), MAX_TOKEN_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(err) => {
                let fix = match err {
                    SmallFileError::NotFound | SmallFileError::PermissionDenied => "",
                    _ => ": give the path of a file that holds the token alone",
                };
                self.problem(path, line, format!("token file `{file}` {err}{fix}"));
                return None;
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            self.problem(path, line, format!("token file `{file}` is not UTF-8 text"));
            return None;
        };
        let token = text.trim_end();
        if token.is_empty() {
            self.problem(path, line, format!("token file `{file}` is empty"));
            return None;
        }
        self.check_secret(path, line, token, &format!("the token in `{file}`"))
            .then(|| token.to_owned())
    }

    /// Resolves a secret from the environment, a file and an inline value, in
    /// that order. Returns `Ok(None)` when no source gives one.
    fn secret(
        &mut self,
        env_name: &str,
        file_key: (&str, Option<&Node>),
        inline_key: (&str, Option<&Node>),
    ) -> Result<Option<(SecretString, TokenSource)>, ()> {
        if let Some(value) = (self.env)(env_name) {
            let value = value.trim().to_owned();
            if !value.is_empty() {
                let ok = self.check_secret(
                    env_name,
                    0,
                    &value,
                    &format!("the environment variable {env_name}"),
                );
                return if ok {
                    Ok(Some((value.into(), TokenSource::Env)))
                } else {
                    Err(())
                };
            }
        }
        let (file_path, file_node) = file_key;
        if let Some(file) = self.optional_string(file_path, file_node) {
            let line = file_node.map_or(0, |n| n.line);
            return match self.token_file(file_path, line, &file) {
                Some(token) => Ok(Some((token.into(), TokenSource::File))),
                None => Err(()),
            };
        }
        let (inline_path, inline_node) = inline_key;
        if let Some(token) = self.optional_string(inline_path, inline_node) {
            let line = inline_node.map_or(0, |n| n.line);
            return if self.check_secret(inline_path, line, &token, "the value") {
                Ok(Some((token.into(), TokenSource::Inline)))
            } else {
                Err(())
            };
        }
        Ok(None)
    }

    /// The whole file.
    fn settings(&mut self, root: &Node, overrides: Overrides) -> Option<Settings> {
        let Value::Map(top) = &root.value else {
            return None;
        };
        self.check_keys("", top, TOP_KEYS);
        let get = |key: &str| top.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n);

        let equinix = self.equinix(get("equinix"));
        let direktiv = self.direktiv(get("direktiv"));
        let state = self.state(get("state"), overrides);
        let log = self.log(get("log"));
        let server = self.server(get("server"));
        let shutdown_grace = self.duration(
            "shutdownGrace",
            get("shutdownGrace"),
            Duration::from_secs(20),
            true,
        );
        Some(Settings {
            equinix: equinix?,
            direktiv: direktiv?,
            state,
            log,
            server,
            shutdown_grace,
        })
    }

    fn equinix(&mut self, node: Option<&Node>) -> Option<EquinixSettings> {
        let entries = self.section("equinix", node);
        self.check_keys("equinix", entries, EQUINIX_KEYS);
        let get = |key: &str| entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n);

        let organization_id = match get("organizationId") {
            None => {
                self.problem(
                    "equinix.organizationId",
                    0,
                    "is missing: set it to your organization's UUID (Metal console, Organization settings)",
                );
                None
            }
            Some(n) if n.value == Value::Null => {
                self.problem("equinix.organizationId", n.line, "is empty: set it to your organization's UUID");
                None
            }
            Some(n) => self
                .nonempty_string(
                    "equinix.organizationId",
                    Some(n),
                    "set it to your organization's UUID",
                )
                .filter(|id| {
                    let bad = id.starts_with('<') || id.chars().any(|c| c.is_whitespace() || c == '/');
                    if bad {
                        self.problem(
                            "equinix.organizationId",
                            n.line,
                            format!("`{id}` is not an organization id: set it to your organization's UUID"),
                        );
                    }
                    !bad
                }),
        };

        let token = match self.secret(
            METAL_TOKEN_ENV,
            ("equinix.packetAuthTokenFile", get("packetAuthTokenFile")),
            ("equinix.packetAuthToken", get("packetAuthToken")),
        ) {
            Ok(Some((token, _))) => Some(token),
            Ok(None) => {
                let line = get("packetAuthToken").map_or(0, |n| n.line);
                self.problem(
                    "equinix.packetAuthToken",
                    line,
                    format!(
                        "no Equinix Metal token: set `equinix.packetAuthToken`, \
                         `equinix.packetAuthTokenFile` or the environment variable {METAL_TOKEN_ENV}"
                    ),
                );
                None
            }
            Err(()) => None,
        };

        let api_url = match get("apiUrl") {
            Some(n) if n.value != Value::Null => self
                .http_url(
                    "equinix.apiUrl",
                    Some(n),
                    DEFAULT_API_URL,
                    &format!(
                        "give the Metal token in `equinix.packetAuthToken`, \
                         `equinix.packetAuthTokenFile` or {METAL_TOKEN_ENV}"
                    ),
                )
                .map(trim_trailing_slash),
            _ => Some(Url::parse(DEFAULT_API_URL).expect("the default API URL is valid")),
        };

        if let Some(warning) = api_url
            .as_ref()
            .and_then(|url| plain_http_warning("equinix.apiUrl", url, "Metal token"))
        {
            self.warnings.push(warning);
        }

        let poll_interval = self.duration(
            "equinix.pollInterval",
            get("pollInterval"),
            Duration::from_secs(10),
            false,
        );
        let per_page = self.integer("equinix.perPage", get("perPage"), 100, 1, 1000);
        let max_pages = self.integer("equinix.maxPages", get("maxPages"), 10, 1, 10_000);
        let concurrency = self.integer("equinix.concurrency", get("concurrency"), 8, 1, 256);
        let levels = self.levels(get("levels"));
        let start_from = self.start_from(get("startFrom"));
        let inventory_refresh = self.duration(
            "equinix.inventoryRefresh",
            get("inventoryRefresh"),
            Duration::from_secs(300),
            false,
        );
        let request_timeout = self.duration(
            "equinix.timeout",
            get("timeout"),
            Duration::from_secs(30),
            false,
        );
        let sweep_timeout = self.duration(
            "equinix.sweepTimeout",
            get("sweepTimeout"),
            Duration::from_secs(300),
            false,
        );
        let max_response_size = self.byte_size(
            "equinix.maxResponseSize",
            get("maxResponseSize"),
            metal_events::DEFAULT_MAX_RESPONSE_SIZE,
        );
        if request_timeout > sweep_timeout {
            let line = get("timeout").or(get("sweepTimeout")).map_or(0, |n| n.line);
            self.problem(
                "equinix.timeout",
                line,
                format!(
                    "{} is longer than `equinix.sweepTimeout` ({}): one request cannot take longer \
                     than the whole sweep",
                    format_duration(request_timeout),
                    format_duration(sweep_timeout)
                ),
            );
        }

        let event_types = self.event_types(get("eventTypes"));

        Some(EquinixSettings {
            organization_id: organization_id?,
            token: token?,
            api_url: api_url?,
            poll_interval,
            per_page,
            max_pages,
            concurrency: concurrency as usize,
            levels,
            start_from,
            inventory_refresh,
            request_timeout,
            sweep_timeout,
            max_response_size,
            event_types,
        })
    }

    fn event_types(&mut self, node: Option<&Node>) -> EventTypes {
        const PATH: &str = "equinix.eventTypes";
        const EXAMPLE: &str = "`[\"provisioning.*\", \"instance.deleted\"]`";
        let Some(node) = node else {
            return EventTypes::default();
        };
        let items: Vec<&Node> = match &node.value {
            Value::Null => return EventTypes::default(),
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![node],
            _ => {
                self.wrong_type(
                    PATH,
                    node,
                    &format!("a list of type patterns such as {EXAMPLE}"),
                );
                return EventTypes::default();
            }
        };
        if items.is_empty() {
            self.problem(
                PATH,
                node.line,
                format!(
                    "is empty, so no event would be sent: list the types to send, such as \
                     {EXAMPLE}, or remove the key to send every type"
                ),
            );
            return EventTypes::default();
        }
        let mut patterns = Vec::new();
        for item in items {
            let Value::Str(text) = &item.value else {
                self.wrong_type(
                    PATH,
                    item,
                    "a type pattern in quotes, such as \"provisioning.*\"",
                );
                continue;
            };
            let pattern = text.trim();
            if pattern.is_empty() {
                self.problem(
                    PATH,
                    item.line,
                    "holds an empty pattern, which matches no type: remove it, or write `*` \
                     for every type",
                );
            } else if !patterns.iter().any(|p| p == pattern) {
                patterns.push(pattern.to_owned());
            }
        }
        EventTypes::new(patterns)
    }

    fn levels(&mut self, node: Option<&Node>) -> Levels {
        const PATH: &str = "equinix.levels";
        const NAMES: &[&str] = &["project", "device", "organization"];
        let Some(node) = node else {
            return Levels::default();
        };
        let items: Vec<&Node> = match &node.value {
            Value::Null => return Levels::default(),
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![node],
            _ => {
                self.wrong_type(PATH, node, "a list of levels such as `[project, device]`");
                return Levels::default();
            }
        };
        let mut levels = Levels {
            project: false,
            device: false,
            organization: false,
        };
        let mut ok = true;
        for item in items {
            let Value::Str(name) = &item.value else {
                self.wrong_type(PATH, item, "a level name (project, device or organization)");
                ok = false;
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "project" | "projects" => levels.project = true,
                "device" | "devices" => levels.device = true,
                "organization" | "organizations" => levels.organization = true,
                _ => {
                    let hint = suggest(name, NAMES)
                        .map_or_else(String::new, |best| format!(" (did you mean `{best}`?)"));
                    self.problem(
                        PATH,
                        item.line,
                        format!(
                            "unknown level `{name}`{hint}: the levels are project, device and \
                             organization"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if ok && !(levels.project || levels.device || levels.organization) {
            self.problem(
                PATH,
                node.line,
                "is empty: name at least one of project, device, organization (or remove the key \
                 for project and device)",
            );
        }
        if ok { levels } else { Levels::default() }
    }

    fn start_from(&mut self, node: Option<&Node>) -> Baseline {
        const PATH: &str = "equinix.startFrom";
        let Some(node) = node else {
            return Baseline::default();
        };
        let text = match &node.value {
            Value::Null => return Baseline::default(),
            Value::Str(s) => s.trim().to_owned(),
            _ => {
                self.wrong_type(PATH, node, "`now`, `all` or an RFC 3339 instant");
                return Baseline::default();
            }
        };
        match text.to_ascii_lowercase().as_str() {
            "now" => Baseline::Now,
            "all" => Baseline::All,
            _ => match DateTime::parse_from_rfc3339(&text) {
                Ok(at) => {
                    let at = at.with_timezone(&Utc);
                    if at > Utc::now() {
                        self.warnings.push(format!(
                            "{PATH} is in the future ({text}): nothing before it will be sent"
                        ));
                    }
                    Baseline::At(at)
                }
                Err(_) => {
                    self.problem(
                        PATH,
                        node.line,
                        format!(
                            "must be `now`, `all` or an RFC 3339 instant such as \
                             `2024-05-01T00:00:00Z`, got `{text}`"
                        ),
                    );
                    Baseline::default()
                }
            },
        }
    }

    fn direktiv(&mut self, node: Option<&Node>) -> Option<DirektivSettings> {
        let entries = self.section("direktiv", node);
        self.check_keys("direktiv", entries, DIREKTIV_KEYS);
        let get = |key: &str| entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n);
        const EXAMPLE: &str = "https://direktiv.example.com/api/namespaces/ops/broadcast";

        let endpoint = match get("endpoint") {
            None => {
                self.problem(
                    "direktiv.endpoint",
                    0,
                    format!(
                        "is missing: set it to the namespace's broadcast URL, e.g. `{EXAMPLE}`"
                    ),
                );
                None
            }
            Some(n) if n.value == Value::Null => {
                self.problem(
                    "direktiv.endpoint",
                    n.line,
                    format!("is empty: set it to the namespace's broadcast URL, e.g. `{EXAMPLE}`"),
                );
                None
            }
            Some(n) => self.http_url(
                "direktiv.endpoint",
                Some(n),
                EXAMPLE,
                &format!(
                    "give the Direktiv token in `direktiv.token`, `direktiv.tokenFile` or \
                     {DIREKTIV_TOKEN_ENV}"
                ),
            ),
        };

        let auth_header = self.auth_header(get("authHeader"));
        let secret = self.secret(
            DIREKTIV_TOKEN_ENV,
            ("direktiv.tokenFile", get("tokenFile")),
            ("direktiv.token", get("token")),
        );
        let apikey = self.optional_string("direktiv.apikey", get("apikey"));
        let (token, source) = match secret {
            Ok(Some((token, source))) => {
                if apikey.is_some() {
                    self.warnings.push(
                        "direktiv.apikey is ignored because a Direktiv token is set (token, \
                         tokenFile or DIREKTIV_TOKEN)"
                            .to_owned(),
                    );
                }
                (Some(token), Some(source))
            }
            Ok(None) => match apikey {
                Some(key) => {
                    let line = get("apikey").map_or(0, |n| n.line);
                    if self.check_secret("direktiv.apikey", line, &key, "the value") {
                        (Some(key.into()), Some(TokenSource::ApiKey))
                    } else {
                        (None, None)
                    }
                }
                None => (None, None),
            },
            Err(()) => (None, None),
        };
        let auth_headers = match (auth_header, source) {
            (Some(header), _) => vec![header],
            (None, Some(TokenSource::ApiKey)) => vec![AuthHeader::ApiKey],
            (None, _) => Auth::DEFAULT_HEADERS.to_vec(),
        };
        if token.is_none() && get("authHeader").is_some_and(|n| n.value != Value::Null) {
            self.warnings.push(
                "direktiv.authHeader is set but there is no Direktiv token: no auth header will \
                 be sent"
                    .to_owned(),
            );
        }

        let insecure_skip_verify = self.boolean(
            "direktiv.insecureSkipVerify",
            get("insecureSkipVerify"),
            false,
        );
        let ca_file = self.ca_file(get("caFile"));
        if insecure_skip_verify && ca_file.is_some() {
            self.warnings.push(
                "direktiv.caFile has no effect while direktiv.insecureSkipVerify is true"
                    .to_owned(),
            );
        }
        if token.is_some()
            && let Some(warning) = endpoint
                .as_ref()
                .and_then(|url| plain_http_warning("direktiv.endpoint", url, "Direktiv token"))
        {
            self.warnings.push(warning);
        }
        let timeout = self.duration(
            "direktiv.timeout",
            get("timeout"),
            Duration::from_secs(10),
            false,
        );
        let concurrency = self.integer("direktiv.concurrency", get("concurrency"), 8, 1, 256);
        let max_retries = self.integer("direktiv.maxRetries", get("maxRetries"), 5, 0, 100);
        let event_on_error = self.boolean("direktiv.event-on-error", get("event-on-error"), false);
        let error_event_interval = self.duration(
            "direktiv.errorEventInterval",
            get("errorEventInterval"),
            Duration::from_secs(300),
            false,
        );
        let map_options = self.map_options(get("typePrefix"), get("sourcePrefix"));

        Some(DirektivSettings {
            endpoint: endpoint?,
            token,
            auth_headers,
            insecure_skip_verify,
            ca_file,
            timeout,
            concurrency: concurrency as usize,
            max_retries,
            event_on_error,
            error_event_interval,
            map_options,
        })
    }

    /// `direktiv.typePrefix` and `direktiv.sourcePrefix`: checked once here so
    /// that every event with an id and a type maps.
    fn map_options(&mut self, type_node: Option<&Node>, source_node: Option<&Node>) -> MapOptions {
        const TYPE: &str = "direktiv.typePrefix";
        const SOURCE: &str = "direktiv.sourcePrefix";
        let mut options = MapOptions::default();
        if let Some(prefix) = self.optional_string(TYPE, type_node) {
            if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.problem(
                    TYPE,
                    type_node.map_or(0, |n| n.line),
                    format!(
                        "`{}` holds a space or a control character: a CloudEvent type prefix \
                         is one word such as `com.example.`",
                        prefix.escape_debug()
                    ),
                );
            } else {
                options.type_prefix = Some(prefix);
            }
        }
        if let Some(prefix) = self.optional_string(SOURCE, source_node) {
            let default = std::mem::replace(&mut options.source_prefix, prefix);
            if let Err(error) = options.validate() {
                options.source_prefix = default;
                self.problem(
                    SOURCE,
                    source_node.map_or(0, |n| n.line),
                    format!(
                        "{error}: write a URI path such as `{}` or a URI such as \
                         `https://example.com/equinix` (encode other characters as %XX)",
                        metal_cloudevents::DEFAULT_SOURCE_PREFIX
                    ),
                );
            }
        }
        options
    }

    fn auth_header(&mut self, node: Option<&Node>) -> Option<AuthHeader> {
        const PATH: &str = "direktiv.authHeader";
        let text = self.optional_string(PATH, node)?;
        let header = match text.to_ascii_lowercase().as_str() {
            "direktiv-token" => AuthHeader::DirektivToken,
            "apikey" => AuthHeader::ApiKey,
            "direktiv-api-key" => AuthHeader::DirektivApiKey,
            "authorization" | "bearer" => AuthHeader::Bearer,
            _ => {
                self.problem(
                    PATH,
                    node.map_or(0, |n| n.line),
                    format!(
                        "unknown header `{text}`: use `Direktiv-Token`, `Direktiv-Api-Key`, \
                         `apikey` or `Authorization` (Bearer), or remove the key to send the \
                         token in both Direktiv-Token and Direktiv-Api-Key"
                    ),
                );
                return None;
            }
        };
        Some(header)
    }

    fn ca_file(&mut self, node: Option<&Node>) -> Option<PathBuf> {
        const PATH: &str = "direktiv.caFile";
        let file = self.optional_string(PATH, node)?;
        let line = node.map_or(0, |n| n.line);
        match small_file::read(Path::new(&file), MAX_CA_FILE_BYTES) {
            Ok(bytes)
                if bytes
                    .windows(27)
                    .any(|w| w == b"-----BEGIN CERTIFICATE-----") =>
            {
                Some(PathBuf::from(file))
            }
            Ok(_) => {
                self.problem(
                    PATH,
                    line,
                    format!("`{file}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                );
                None
            }
            Err(err) => {
                self.problem(
                    PATH,
                    line,
                    format!("`{file}` {err}: give the path of a PEM bundle"),
                );
                None
            }
        }
    }

    fn state(&mut self, node: Option<&Node>, overrides: Overrides) -> StateSettings {
        let entries = self.section("state", node);
        self.check_keys("state", entries, STATE_KEYS);
        let get = |key: &str| entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n);
        let path = self
            .optional_string("state.path", get("path"))
            .map(PathBuf::from);
        if let Some(p) = &path
            && p.is_dir()
        {
            self.problem(
                "state.path",
                get("path").map_or(0, |n| n.line),
                format!(
                    "`{}` is a directory: give the path of a file, e.g. `{}`",
                    p.display(),
                    p.join("state.json").display()
                ),
            );
        }
        let overlap = self.duration(
            "state.overlap",
            get("overlap"),
            Duration::from_secs(600),
            false,
        );
        let dead_letter_line = get("deadLetterPath").map_or(0, |n| n.line);
        let dead_letter_path = self
            .optional_string("state.deadLetterPath", get("deadLetterPath"))
            .map(PathBuf::from);
        if let Some(p) = &dead_letter_path {
            if p.is_dir() {
                self.problem(
                    "state.deadLetterPath",
                    dead_letter_line,
                    format!(
                        "`{}` is a directory: give the path of a file, e.g. `{}`",
                        p.display(),
                        p.join("dead-letter.jsonl").display()
                    ),
                );
            } else if path.as_ref() == Some(p) {
                self.problem(
                    "state.deadLetterPath",
                    dead_letter_line,
                    "is the state file itself: give the dead letters a file of their own, or \
                     leave the key out to keep them beside the state",
                );
            }
        }
        let dead_letter_max = self.integer(
            "state.deadLetterMax",
            get("deadLetterMax"),
            crate::dead_letter::DEFAULT_MAX,
            1,
            crate::dead_letter::MAX_MAX,
        );
        StateSettings {
            path,
            overlap,
            dead_letter_path,
            dead_letter_max,
            reset_corrupt: overrides.reset_state,
        }
    }

    fn log(&mut self, node: Option<&Node>) -> LogSettings {
        let entries = self.section("log", node);
        self.check_keys("log", entries, LOG_KEYS);
        let get = |key: &str| entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n);
        let format = match get("format") {
            None => LogFormat::default(),
            Some(n) => match self
                .string("log.format", n)
                .map(|s| s.trim().to_ascii_lowercase())
            {
                None => LogFormat::default(),
                Some(s) if s == "text" => LogFormat::Text,
                Some(s) if s == "json" => LogFormat::Json,
                Some(s) => {
                    self.problem(
                        "log.format",
                        n.line,
                        format!("must be `text` or `json`, got `{s}`"),
                    );
                    LogFormat::default()
                }
            },
        };
        let level = match get("level") {
            None => "info".to_owned(),
            Some(n) => match self.string("log.level", n) {
                None => "info".to_owned(),
                Some(s) => match check_log_level(&s) {
                    Ok(filter) => filter,
                    Err(why) => {
                        self.problem("log.level", n.line, why);
                        "info".to_owned()
                    }
                },
            },
        };
        LogSettings { format, level }
    }

    fn server(&mut self, node: Option<&Node>) -> ServerSettings {
        let entries = self.section("server", node);
        self.check_keys("server", entries, SERVER_KEYS);
        let get = |key: &str| entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n);
        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .expect("the default address is valid");
        let enabled = self.boolean("server.enabled", get("enabled"), true);
        let listen = match get("listen") {
            None => default_listen,
            Some(n) => match self.string("server.listen", n) {
                None => default_listen,
                Some(s) => match s.trim().parse::<SocketAddr>() {
                    Ok(addr) => addr,
                    Err(_) => {
                        self.problem(
                            "server.listen",
                            n.line,
                            format!(
                                "must be an IP address and port such as `{DEFAULT_LISTEN}` or \
                                 `127.0.0.1:9464`, got `{s}`"
                            ),
                        );
                        default_listen
                    }
                },
            },
        };
        ServerSettings { enabled, listen }
    }
}

/// Checks `log.level`: a level name (any case; `warning` means `warn`), or a
/// tracing filter directive such as `info,equinix_receiver=debug`. Returns the
/// filter to install.
pub(crate) fn check_log_level(text: &str) -> Result<String, String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty: use one of trace, debug, info, warn, error, off".to_owned());
    }
    let is_directive = text.contains(['=', ',', '[', ':']);
    if !is_directive {
        let lower = text.to_ascii_lowercase();
        if lower == "warning" {
            return Ok("warn".to_owned());
        }
        if LEVELS.contains(&lower.as_str()) {
            return Ok(lower);
        }
        let hint = suggest(&lower, LEVELS)
            .map_or_else(String::new, |best| format!(" (did you mean `{best}`?)"));
        return Err(format!(
            "unknown level `{text}`{hint}: use one of trace, debug, info, warn, error, off, or a \
             filter such as `info,equinix_receiver=debug`"
        ));
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|err| format!("is not a valid log filter `{text}`: {err}"))
}

/// `text` with anything between the scheme and an `@` in the authority
/// replaced, so a message can show a URL but never its credentials.
fn without_userinfo(text: &str) -> Cow<'_, str> {
    let start = text.find("://").map_or(0, |at| at + 3);
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |at| start + at);
    match text[start..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!(
            "{}[REDACTED]{}",
            &text[..start],
            &text[start + at..]
        )),
        None => Cow::Borrowed(text),
    }
}

/// The warning for a plain-http URL that would carry `token` over the
/// network: loopback hosts (a local proxy, a simulator) are exempt.
fn plain_http_warning(key: &str, url: &Url, token: &str) -> Option<String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    };
    (url.scheme() == "http" && !loopback)
        .then(|| format!("{key} uses plain http: the {token} is sent unencrypted"))
}

fn trim_trailing_slash(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    url
}

/// Parses a duration: one or more `<whole number><unit>` parts, units `ms`,
/// `s`, `m` and `h` (`10s`, `500ms`, `5m`, `1h30m`). A bare number is refused
/// because its unit would be a guess.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let hint = "write a duration such as `10s`, `500ms`, `5m` or `1h30m`";
    if text.is_empty() {
        return Err(format!("is empty: {hint}"));
    }
    if text.starts_with('-') {
        return Err(format!("must not be negative, got `{text}`"));
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "a bare number has no unit: write `{text}s` for seconds (or `ms`, `m`, `h`)"
        ));
    }
    let bad = || format!("is not a duration: {hint}, got `{text}`");
    let mut total = Duration::ZERO;
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("is too long, got `{text}`"))?;
        rest = &rest[digits..];
        if rest.starts_with('.') {
            return Err(format!(
                "fractions are not supported: use a smaller unit (`1500ms` rather than `1.5s`), \
                 got `{text}`"
            ));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("`{number}` has no unit: {hint}, got `{text}`")),
            unit => {
                return Err(format!(
                    "unknown unit `{unit}`: the units are `ms`, `s`, `m` and `h`, got `{text}`"
                ));
            }
        };
        rest = &rest[unit_len..];
        let part = number
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("is too long, got `{text}`"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("is too long, got `{text}`"))?;
    }
    if total > MAX_DURATION {
        return Err(format!("is longer than 7 days, got `{text}`"));
    }
    Ok(total)
}

/// Parses a size in bytes: a whole number of bytes (`65536`), or a whole
/// number with a unit, binary (`KiB`, `MiB`, `GiB`) or decimal (`KB`, `MB`,
/// `GB`), in any case, a space allowed before it (`32MiB`, `64 KiB`, `1GB`).
pub(crate) fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let hint = "write a size such as `32MiB`, `512KiB` or `1GB`";
    if text.is_empty() {
        return Err(format!("is empty: {hint}"));
    }
    if text.starts_with('-') {
        return Err(format!("must not be negative, got `{text}`"));
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("is not a size: {hint}, got `{text}`"));
    }
    let number: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("is too large, got `{text}`"))?;
    let unit = text[digits..].trim_start();
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "fractions are not supported: use a smaller unit (`1536KiB` rather than `1.5MiB`), \
             got `{text}`"
        ));
    }
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit `{unit}`: the units are `KiB`, `MiB`, `GiB`, `KB`, `MB` and `GB` \
                 (or none, for bytes), got `{text}`"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("is too large, got `{text}`"))
}

/// Formats a size the way the config writes it: the largest binary unit that
/// divides it (`32MiB`, `64KiB`), else bytes.
pub(crate) fn format_byte_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// Formats a duration the way the config writes it (`1h30m`, `500ms`).
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

/// A one-line summary of the settings for `--check`, without secrets.
pub(crate) fn summary(settings: &Settings) -> String {
    let e = &settings.equinix;
    let d = &settings.direktiv;
    let mut levels = Vec::new();
    if e.levels.organization {
        levels.push("organization");
    }
    if e.levels.project {
        levels.push("project");
    }
    if e.levels.device {
        levels.push("device");
    }
    let mut endpoint = d.endpoint.clone();
    // Never show credentials that were put into the URL.
    let _ = endpoint.set_password(None);
    let _ = endpoint.set_username("");
    endpoint.set_query(None);
    let auth = match (&d.token, d.auth_headers.as_slice()) {
        (None, _) => "no auth header".to_owned(),
        // Only the header names: the token is never shown.
        (Some(_), [header]) => format!("auth header {header}"),
        (Some(_), headers) => format!("auth headers {}", header_names(headers)),
    };
    let state = settings.state.path.as_ref().map_or_else(
        || "default location".to_owned(),
        |p| p.display().to_string(),
    );
    let mut summary = format!(
        "organization {}, levels {}, poll every {}, deliver to {} ({auth}), state {state}",
        e.organization_id,
        levels.join("+"),
        format_duration(e.poll_interval),
        endpoint
    );
    if !e.event_types.is_all() {
        summary.push_str(&format!(
            ", event types {}",
            e.event_types.patterns().join(" ")
        ));
    }
    summary
}

/// Header names for people: `Direktiv-Token and Direktiv-Api-Key`.
pub(crate) fn header_names(headers: &[AuthHeader]) -> String {
    let names: Vec<String> = headers.iter().map(ToString::to_string).collect();
    match names.split_last() {
        None => "no header".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Every key the loader knows, dotted (`direktiv.endpoint`).
#[cfg(test)]
fn all_keys() -> Vec<String> {
    let mut keys = vec!["shutdownGrace".to_owned()];
    for (section, section_keys) in SECTIONS {
        for key in *section_keys {
            keys.push(join(section, key));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const OLD: &str = "\
equinix:
  organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00
  packetAuthToken: metal-inline-token
direktiv:
  endpoint: https://direktiv.example.com/api/namespaces/ops/broadcast
  insecureSkipVerify: true
  token: direktiv-inline-token
  apikey: old-apikey
  event-on-error: true
";

    const MINIMAL: &str = "\
equinix:
  organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00
  packetAuthToken: metal-inline-token
direktiv:
  endpoint: http://127.0.0.1:9/api/namespaces/ops/broadcast
";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(yaml: &str) -> Result<Loaded, Vec<Problem>> {
        load_bytes(yaml.as_bytes(), &no_env, Overrides::default())
    }

    fn load_with_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, Vec<Problem>> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        load_bytes(yaml.as_bytes(), &env, Overrides::default())
    }

    /// The problems of a config that must fail, as displayed.
    fn problems(yaml: &str) -> Vec<String> {
        match load(yaml) {
            Ok(loaded) => panic!("expected problems, got {:?}", loaded.settings),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    fn minimal_with(section: &str, line: &str) -> String {
        MINIMAL.replace(&format!("{section}:\n"), &format!("{section}:\n  {line}\n"))
    }

    #[test]
    fn durations_parse_in_every_documented_form() {
        let ok = [
            ("10s", 10_000),
            ("500ms", 500),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1m30s", 90_000),
            ("2s500ms", 2_500),
            (" 10s ", 10_000),
            ("0s", 0),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_say_why() {
        let bad = [
            ("", "is empty"),
            ("-5s", "negative"),
            ("10", "bare number"),
            ("1.5s", "fractions"),
            ("10 s", "unknown unit"),
            ("10sec", "unknown unit"),
            ("5d", "unknown unit"),
            ("s", "not a duration"),
            ("ten seconds", "not a duration"),
            ("99999999999999999999h", "too long"),
            ("200h", "longer than 7 days"),
        ];
        for (text, needle) in bad {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(needle), "`{text}`: {err}");
        }
    }

    #[test]
    fn byte_sizes_parse_in_every_documented_form() {
        for (text, bytes) in [
            ("65536", 65_536),
            ("64KiB", 65_536),
            ("64 KiB", 65_536),
            ("32MiB", 32 << 20),
            ("32mib", 32 << 20),
            ("1GiB", 1 << 30),
            ("500KB", 500_000),
            ("32MB", 32_000_000),
            ("1GB", 1_000_000_000),
            (" 100000B ", 100_000),
        ] {
            assert_eq!(parse_byte_size(text), Ok(bytes), "{text}");
        }
        for (text, needle) in [
            ("", "is empty"),
            ("-1MiB", "negative"),
            ("1.5MiB", "fractions"),
            ("MiB", "not a size"),
            ("32 megabytes", "unknown unit"),
            ("99999999999999999999", "too large"),
            ("99999999999GiB", "too large"),
        ] {
            let err = parse_byte_size(text).expect_err(text);
            assert!(err.contains(needle), "`{text}`: {err}");
        }
        let yaml = minimal_with("equinix", "maxResponseSize: 8MiB");
        assert_eq!(
            load(&yaml).unwrap().settings.equinix.max_response_size,
            8 << 20
        );
        let yaml = minimal_with("equinix", "maxResponseSize: 131072");
        assert_eq!(
            load(&yaml).unwrap().settings.equinix.max_response_size,
            131_072
        );
    }

    #[test]
    fn byte_sizes_format_as_they_are_written() {
        for (bytes, text) in [(32 << 20, "32MiB"), (65_536, "64KiB"), (1 << 30, "1GiB")] {
            assert_eq!(format_byte_size(bytes), text);
            assert_eq!(parse_byte_size(text), Ok(bytes));
        }
        assert_eq!(format_byte_size(1_000_000), "1000000 bytes");
    }

    #[test]
    fn durations_format_as_they_are_written() {
        for text in ["10s", "500ms", "5m", "1h30m", "2s500ms", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn the_old_config_loads_unchanged() {
        let loaded = load(OLD).unwrap();
        let s = &loaded.settings;
        assert_eq!(
            s.equinix.organization_id,
            "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00"
        );
        assert_eq!(s.equinix.token.expose_secret(), "metal-inline-token");
        assert_eq!(s.direktiv.endpoint.host_str(), Some("direktiv.example.com"));
        assert!(s.direktiv.insecure_skip_verify);
        assert!(s.direktiv.event_on_error);
        let token = s.direktiv.token.as_ref().unwrap();
        assert_eq!(token.expose_secret(), "direktiv-inline-token");
        assert_eq!(s.direktiv.auth_headers, Auth::DEFAULT_HEADERS);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("apikey is ignored"))
        );
    }

    #[test]
    fn defaults_match_the_settings_documentation() {
        let s = load(MINIMAL).unwrap().settings;
        assert_eq!(s.equinix.api_url.as_str(), DEFAULT_API_URL);
        assert_eq!(s.equinix.poll_interval, Duration::from_secs(10));
        assert_eq!(s.equinix.per_page, 100);
        assert_eq!(s.equinix.max_pages, 10);
        assert_eq!(s.equinix.concurrency, 8);
        assert_eq!(
            s.equinix.levels,
            Levels {
                project: true,
                device: true,
                organization: false
            }
        );
        assert_eq!(s.equinix.start_from, Baseline::Now);
        assert_eq!(s.equinix.inventory_refresh, Duration::from_secs(300));
        assert_eq!(s.equinix.request_timeout, Duration::from_secs(30));
        assert_eq!(s.equinix.sweep_timeout, Duration::from_secs(300));
        assert_eq!(s.equinix.max_response_size, 32 * 1024 * 1024);
        assert!(s.equinix.event_types.is_all());
        assert!(s.direktiv.token.is_none());
        assert_eq!(
            s.direktiv.auth_headers,
            [AuthHeader::DirektivToken, AuthHeader::DirektivApiKey]
        );
        assert!(!s.direktiv.insecure_skip_verify);
        assert_eq!(s.direktiv.ca_file, None);
        assert_eq!(s.direktiv.timeout, Duration::from_secs(10));
        assert_eq!(s.direktiv.concurrency, 8);
        assert_eq!(s.direktiv.max_retries, 5);
        assert!(!s.direktiv.event_on_error);
        assert_eq!(s.direktiv.error_event_interval, Duration::from_secs(300));
        assert_eq!(s.direktiv.map_options, MapOptions::default());
        assert_eq!(
            s.direktiv.map_options.source_prefix,
            "direktiv/listener/equinix"
        );
        assert_eq!(s.direktiv.map_options.type_prefix, None);
        assert_eq!(s.state.path, None);
        assert_eq!(s.state.overlap, Duration::from_secs(600));
        assert_eq!(s.state.dead_letter_path, None);
        assert_eq!(s.state.dead_letter_max, 1000);
        assert!(!s.state.reset_corrupt);
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.log.level, "info");
        assert!(s.server.enabled);
        assert_eq!(
            s.server.listen,
            DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()
        );
        assert_eq!(s.shutdown_grace, Duration::from_secs(20));
    }

    #[test]
    fn the_full_example_sets_every_key() {
        let text = include_str!("../../../fixtures/config/full.yaml");
        let env = |_: &str| None;
        // The example's token files do not exist here: drop those two lines.
        let text: String = text
            .lines()
            .filter(|l| {
                !l.contains("TokenFile:") && !l.contains("tokenFile:") && !l.contains("caFile:")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let loaded = load_bytes(text.as_bytes(), &env, Overrides { reset_state: true }).unwrap();
        let s = loaded.settings;
        assert_eq!(s.equinix.per_page, 200);
        assert_eq!(s.equinix.max_response_size, 16 << 20);
        assert_eq!(
            s.equinix.levels,
            Levels {
                project: true,
                device: true,
                organization: true
            }
        );
        assert!(matches!(s.equinix.start_from, Baseline::At(_)));
        assert_eq!(s.direktiv.auth_headers, [AuthHeader::DirektivApiKey]);
        assert_eq!(
            s.equinix.event_types.patterns(),
            ["provisioning.*", "instance.deleted"]
        );
        assert_eq!(
            s.direktiv.map_options.type_prefix.as_deref(),
            Some("com.example.")
        );
        assert_eq!(
            s.direktiv.map_options.source_prefix,
            "https://example.com/equinix"
        );
        assert_eq!(s.log.format, LogFormat::Json);
        assert!(!s.server.enabled);
        assert!(s.state.reset_corrupt);
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
        // Every known key appears in the example.
        let full = include_str!("../../../fixtures/config/full.yaml");
        for key in all_keys() {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(full.contains(&format!("{leaf}:")), "full.yaml lacks {key}");
        }
    }

    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../../docs/configuration.md");
        for key in all_keys() {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/configuration.md lacks `{key}`"
            );
        }
    }

    #[test]
    fn apikey_alone_is_sent_as_apikey_unless_auth_header_says_otherwise() {
        let yaml = minimal_with("direktiv", "apikey: k1");
        let d = load(&yaml).unwrap().settings.direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "k1");
        assert_eq!(d.auth_headers, [AuthHeader::ApiKey]);

        let yaml = minimal_with(
            "direktiv",
            "apikey: k1\n  token: \"\"\n  authHeader: Direktiv-Api-Key",
        );
        let d = load(&yaml).unwrap().settings.direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "k1");
        assert_eq!(d.auth_headers, [AuthHeader::DirektivApiKey]);
    }

    #[test]
    fn environment_beats_file_beats_inline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let yaml = minimal_with(
            "direktiv",
            &format!("token: inline\n  tokenFile: {}", file.display()),
        );

        let d = load(&yaml).unwrap().settings.direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "from-file");
        let d = load_with_env(&yaml, &[(DIREKTIV_TOKEN_ENV, "from-env")])
            .unwrap()
            .settings
            .direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "from-env");
        // An empty variable counts as unset.
        let d = load_with_env(&yaml, &[(DIREKTIV_TOKEN_ENV, "")])
            .unwrap()
            .settings
            .direktiv;
        assert_eq!(d.token.unwrap().expose_secret(), "from-file");

        let e = load_with_env(MINIMAL, &[(METAL_TOKEN_ENV, "metal-env")])
            .unwrap()
            .settings
            .equinix;
        assert_eq!(e.token.expose_secret(), "metal-env");
    }

    #[test]
    fn metal_token_from_the_environment_alone_is_enough() {
        let yaml = MINIMAL.replace("  packetAuthToken: metal-inline-token\n", "");
        assert!(load(&yaml).is_err());
        let e = load_with_env(&yaml, &[(METAL_TOKEN_ENV, "metal-env")])
            .unwrap()
            .settings
            .equinix;
        assert_eq!(e.token.expose_secret(), "metal-env");
    }

    #[test]
    fn token_problems_never_show_the_token() {
        for (yaml, env) in [
            (
                minimal_with("direktiv", "token: \"Bearer s3cr3t-value\""),
                None,
            ),
            (
                MINIMAL.replace("metal-inline-token", "\"s3cr3t value\""),
                None,
            ),
            (MINIMAL.to_owned(), Some("s3cr3t\tvalue")),
        ] {
            let vars: Vec<(&str, &str)> = env.map(|v| (METAL_TOKEN_ENV, v)).into_iter().collect();
            let problems = load_with_env(&yaml, &vars).unwrap_err();
            let text = problems.iter().map(ToString::to_string).collect::<String>();
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(text.contains("HTTP header"), "{text}");
        }
    }

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
                 `pollInterval`, `perPage`, `maxPages`, `concurrency`, `levels`, `startFrom`, \
                 `inventoryRefresh`, `timeout`, `sweepTimeout`, `maxResponseSize`, `eventTypes`",
            ),
            (
                "direktiv",
                "`endpoint`, `token`, `tokenFile`, `apikey`, `authHeader`, \
                 `insecureSkipVerify`, `caFile`, `timeout`, `concurrency`, `maxRetries`, \
                 `event-on-error`, `errorEventInterval`, `typePrefix`, `sourcePrefix`",
            ),
            (
                "state",
                "`path`, `overlap`, `deadLetterPath`, `deadLetterMax`",
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
        let yaml = "equinix: {organizationId: x, packetAuthToken: t, perPage: 0, bogus: 1}\n\
                    direktiv: {endpoint: \"ftp://h\", timeout: 1, nope: 2}\n\
                    sever: {listen: x}\n";
        let found = problems(yaml);
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
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

    #[test]
    fn problems_name_the_key_and_the_line() {
        let found = problems(&minimal_with("equinix", "perPage: 5000"));
        assert_eq!(
            found,
            ["equinix.perPage (line 2): must be between 1 and 1000, got 5000 (the default is 100)"]
        );
    }

    #[test]
    fn bad_values_are_each_reported() {
        let cases = [
            ("equinix", "perPage: 0", "between 1 and 1000"),
            ("equinix", "perPage: \"100\"", "without quotes"),
            ("equinix", "perPage: 1.5", "whole number"),
            ("equinix", "concurrency: 0", "between 1 and 256"),
            ("direktiv", "concurrency: -1", "between 1 and 256"),
            ("equinix", "pollInterval: 0s", "greater than zero"),
            ("equinix", "pollInterval: 10", "bare number"),
            ("equinix", "pollInterval: [1]", "must be a duration"),
            (
                "equinix",
                "levels: [project, devcie]",
                "did you mean `device`?",
            ),
            ("equinix", "levels: []", "at least one"),
            ("equinix", "levels: {a: 1}", "a list of levels"),
            ("equinix", "startFrom: yesterday", "RFC 3339"),
            ("equinix", "apiUrl: ftp://example.com", "http or https"),
            ("equinix", "apiUrl: not a url", "not a valid URL"),
            (
                "equinix",
                "timeout: 10m",
                "longer than `equinix.sweepTimeout`",
            ),
            ("direktiv", "insecureSkipVerify: maybe", "true or false"),
            ("direktiv", "authHeader: X-Token", "unknown header"),
            (
                "direktiv",
                "tokenFile: /nonexistent/token",
                "does not exist",
            ),
            ("direktiv", "caFile: /nonexistent/ca.pem", "does not exist"),
            ("direktiv", "maxRetries: 1000", "between 0 and 100"),
            ("equinix", "maxResponseSize: 0", "between 64KiB and 1GiB"),
            ("equinix", "maxResponseSize: 1KB", "between 64KiB and 1GiB"),
            ("equinix", "maxResponseSize: 2GiB", "between 64KiB and 1GiB"),
            ("equinix", "maxResponseSize: lots", "not a size"),
            ("equinix", "maxResponseSize: 32XB", "unknown unit"),
            ("equinix", "maxResponseSize: -1", "negative"),
            ("equinix", "maxResponseSize: [1]", "a size such as"),
            (
                "equinix",
                "eventTypes: []",
                "is empty, so no event would be sent",
            ),
            (
                "equinix",
                "eventTypes: [\"provisioning.*\", \"  \"]",
                "empty pattern",
            ),
            ("equinix", "eventTypes: {a: 1}", "a list of type patterns"),
            ("equinix", "eventTypes: [1]", "a type pattern in quotes"),
            (
                "direktiv",
                "typePrefix: \"com example.\"",
                "a space or a control character",
            ),
            (
                "direktiv",
                "typePrefix: \"a\\tb\"",
                "a space or a control character",
            ),
            ("direktiv", "sourcePrefix: \"my source\"", "is not usable"),
            ("direktiv", "sourcePrefix: \"x?y\"", "`?` and `#`"),
            ("direktiv", "sourcePrefix: \"50%\"", "%XX"),
        ];
        for (section, line, needle) in cases {
            let found = problems(&minimal_with(section, line));
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{line}: {found:?}"
            );
        }
        let org = "organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00";
        for (value, needle) in [
            ("\"\"", "is empty"),
            ("", "is empty"),
            ("\"<org uuid>\"", "not an organization id"),
            ("12345", "a string (put the value in quotes)"),
        ] {
            let found = problems(&MINIMAL.replace(org, &format!("organizationId: {value}")));
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{value}: {found:?}"
            );
        }
        let extra = [
            ("log:\n  level: verbose\n", "unknown level `verbose`"),
            ("log:\n  level: \"info,=[\"\n", "not a valid log filter"),
            ("log:\n  format: xml\n", "`text` or `json`"),
            ("server:\n  listen: localhost\n", "IP address and port"),
            ("server: true\n", "must be a mapping of keys"),
            ("shutdownGrace: -1s\n", "negative"),
            ("state:\n  overlap: 0s\n", "greater than zero"),
            ("state:\n  deadLetterMax: 0\n", "between 1 and 100000"),
            ("state:\n  deadLetterPath: /\n", "is a directory"),
            (
                "state:\n  path: /tmp/s.json\n  deadLetterPath: /tmp/s.json\n",
                "is the state file itself",
            ),
        ];
        for (tail, needle) in extra {
            let found = problems(&format!("{MINIMAL}{tail}"));
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{tail}: {found:?}"
            );
        }
    }

    #[test]
    fn event_types_are_patterns_and_a_bad_one_names_its_line() {
        let e = load(&minimal_with("equinix", "eventTypes: \"provisioning.*\""))
            .unwrap()
            .settings
            .equinix;
        assert_eq!(e.event_types.patterns(), ["provisioning.*"]);
        let e = load(&minimal_with(
            "equinix",
            "eventTypes: [\"provisioning.*\", instance.deleted, \" provisioning.*\"]",
        ))
        .unwrap()
        .settings
        .equinix;
        assert_eq!(
            e.event_types.patterns(),
            ["provisioning.*", "instance.deleted"]
        );
        assert!(e.event_types.matches("provisioning.110"));
        assert!(!e.event_types.matches("power.off"));
        assert!(
            load(&minimal_with("equinix", "eventTypes:"))
                .unwrap()
                .settings
                .equinix
                .event_types
                .is_all()
        );

        let found = problems(&minimal_with(
            "equinix",
            "eventTypes:\n    - provisioning.*\n    - \"\"",
        ));
        assert_eq!(
            found,
            [
                "equinix.eventTypes (line 4): holds an empty pattern, which matches no type: \
              remove it, or write `*` for every type"
            ]
        );
    }

    #[test]
    fn type_and_source_prefixes_reach_the_mapper_validated() {
        let d = load(&minimal_with(
            "direktiv",
            "typePrefix: com.example.\n  sourcePrefix: https://example.com/metal/",
        ))
        .unwrap()
        .settings
        .direktiv;
        assert_eq!(d.map_options.type_prefix.as_deref(), Some("com.example."));
        assert_eq!(d.map_options.source_prefix, "https://example.com/metal/");
        // Empty means unset, as for the other string keys.
        let d = load(&minimal_with(
            "direktiv",
            "typePrefix: \"\"\n  sourcePrefix: \"\"",
        ))
        .unwrap()
        .settings
        .direktiv;
        assert_eq!(d.map_options, MapOptions::default());

        let found = problems(&minimal_with("direktiv", "sourcePrefix: \"a b\""));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("direktiv.sourcePrefix (line 5): the source prefix \"a b\""),
            "{found:?}"
        );
    }

    #[test]
    fn summary_lists_the_event_types_when_some_are_chosen() {
        let all = summary(&load(MINIMAL).unwrap().settings);
        assert!(!all.contains("event types"), "{all}");
        let yaml = minimal_with("equinix", "eventTypes: [\"provisioning.*\", power.off]");
        let some = summary(&load(&yaml).unwrap().settings);
        assert!(
            some.ends_with(", event types provisioning.* power.off"),
            "{some}"
        );
    }

    #[test]
    fn shutdown_grace_may_be_zero() {
        let s = load(&format!("{MINIMAL}shutdownGrace: 0s\n"))
            .unwrap()
            .settings;
        assert_eq!(s.shutdown_grace, Duration::ZERO);
    }

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
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
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

    #[test]
    fn log_levels_and_filters() {
        for ok in [
            "info",
            "DEBUG",
            "warn",
            "off",
            "info,equinix_receiver=debug",
            "equinix_receiver=trace",
        ] {
            assert_eq!(
                check_log_level(ok).as_deref(),
                Ok(ok.to_ascii_lowercase().as_str())
            );
        }
        assert_eq!(check_log_level(" Warning ").as_deref(), Ok("warn"));
        assert!(
            check_log_level("inf")
                .unwrap_err()
                .contains("did you mean `info`?")
        );
    }

    #[test]
    fn urls_in_messages_lose_their_credentials() {
        for (text, shown) in [
            ("ftp://u:p@h:1/x?q@r", "ftp://[REDACTED]@h:1/x?q@r"),
            ("https://u@h", "https://[REDACTED]@h"),
            ("u:p@h/x", "[REDACTED]@h/x"),
            ("https://h/x@y", "https://h/x@y"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_userinfo(text), shown, "{text}");
        }
    }

    #[test]
    fn summary_shows_no_secret() {
        let summary = summary(&load(OLD).unwrap().settings);
        for secret in ["metal-inline-token", "direktiv-inline-token", "old-apikey"] {
            assert!(!summary.contains(secret), "{summary}");
        }
        assert!(
            summary.contains("auth headers Direktiv-Token and Direktiv-Api-Key"),
            "{summary}"
        );
        let narrowed = OLD.replace("  apikey: old-apikey\n", "  authHeader: apikey\n");
        let narrowed = super::summary(&load(&narrowed).unwrap().settings);
        assert!(narrowed.contains("(auth header apikey)"), "{narrowed}");
    }

    #[test]
    fn auth_header_names_exactly_one_header() {
        for (value, expected) in [
            ("Direktiv-Token", AuthHeader::DirektivToken),
            ("direktiv-api-key", AuthHeader::DirektivApiKey),
            ("APIKEY", AuthHeader::ApiKey),
            ("Authorization", AuthHeader::Bearer),
        ] {
            let yaml = minimal_with("direktiv", &format!("token: t\n  authHeader: {value}"));
            let d = load(&yaml).unwrap().settings.direktiv;
            assert_eq!(d.auth_headers, [expected], "{value}");
        }
    }

    /// Property tests of the loader: whatever the file holds, it gives
    /// `Settings` or a list of problems, never a panic.
    mod properties {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;

        /// A YAML-ish document: scalars in their YAML text form, mappings and
        /// sequences, rendered in block style.
        #[derive(Debug, Clone)]
        enum Doc {
            Scalar(String),
            Map(Vec<(String, Doc)>),
            Seq(Vec<Doc>),
        }

        impl Doc {
            fn render(&self, indent: usize, out: &mut String) {
                let pad = " ".repeat(indent);
                match self {
                    Doc::Scalar(text) => {
                        out.push_str(text);
                        out.push('\n');
                    }
                    Doc::Map(entries) if entries.is_empty() => out.push_str("{}\n"),
                    Doc::Seq(items) if items.is_empty() => out.push_str("[]\n"),
                    Doc::Map(entries) => {
                        for (key, value) in entries {
                            out.push_str(&format!("{pad}{key}:"));
                            value.render_nested(indent, out);
                        }
                    }
                    Doc::Seq(items) => {
                        for item in items {
                            out.push_str(&format!("{pad}-"));
                            item.render_nested(indent, out);
                        }
                    }
                }
            }

            /// After `key:` or `-`: a scalar on the same line, a block below.
            fn render_nested(&self, indent: usize, out: &mut String) {
                match self {
                    Doc::Map(e) if !e.is_empty() => {
                        out.push('\n');
                        self.render(indent + 2, out);
                    }
                    Doc::Seq(i) if !i.is_empty() => {
                        out.push('\n');
                        self.render(indent + 2, out);
                    }
                    _ => {
                        out.push(' ');
                        self.render(indent, out);
                    }
                }
            }
        }

        /// Key names near the real ones: every section and key, each also
        /// with one character inserted, and random names.
        fn key() -> impl Strategy<Value = String> {
            let mut real: Vec<String> = all_keys()
                .iter()
                .flat_map(|k| k.split('.').map(str::to_owned).collect::<Vec<_>>())
                .collect();
            real.sort();
            real.dedup();
            prop_oneof![
                6 => prop::sample::select(real.clone()),
                1 => (prop::sample::select(real), any::<Index>(), "[ -~]").prop_map(
                    |(key, at, c)| {
                        let at = at.index(key.len() + 1);
                        format!("{}{c}{}", &key[..at], &key[at..])
                    }
                ),
                1 => "[a-zA-Z_ -]{0,12}",
            ]
        }

        /// Scalars as YAML writes them, biased towards what the keys take,
        /// with some YAML oddities (tags, anchors, aliases, block text).
        fn scalar() -> impl Strategy<Value = String> {
            let plain = prop_oneof![
                Just("~".to_owned()),
                Just("null".to_owned()),
                Just("yes".to_owned()),
                Just("false".to_owned()),
                any::<i64>().prop_map(|n| n.to_string()),
                Just("340282366920938463463374607431768211456".to_owned()),
                Just("-170141183460469231731687303715884105729".to_owned()),
                any::<f64>().prop_map(|f| f.to_string()),
                Just(".nan".to_owned()),
                Just("-.inf".to_owned()),
                "[+-]?[0-9]{1,22}(ms|s|m|h|d|us)?([0-9]{1,3}(ms|s|m|h))?",
                "(https?|ftp|file)://([a-z]{1,5}(:[a-z]{0,5})?@)?[a-z0-9.:\\[\\]-]{0,20}(/[a-z%]{0,8}){0,3}",
                "[+-]?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
                "[0-9.:\\[\\]a-f]{0,20}",
                "\"[^\"\\\\]{0,16}\"",
                "'[^']{0,16}'",
                "[a-zA-Z0-9][a-zA-Z0-9 ./,<>-]{0,20}",
                Just("[project, device, organization]".to_owned()),
            ];
            let odd = prop_oneof![
                Just("{a: 1, b: [2]}".to_owned()),
                Just("!!binary aGVsbG8=".to_owned()),
                Just("&anchor value".to_owned()),
                Just("*anchor".to_owned()),
                Just("|\n  a block\n  of text".to_owned()),
                ".{0,12}",
            ];
            prop_oneof![6 => plain, 1 => odd]
        }

        fn doc() -> impl Strategy<Value = Doc> {
            scalar()
                .prop_map(Doc::Scalar)
                .prop_recursive(4, 48, 8, |inner| {
                    prop_oneof![
                        prop::collection::vec((key(), inner.clone()), 0..8).prop_map(Doc::Map),
                        prop::collection::vec(inner, 0..4).prop_map(Doc::Seq),
                    ]
                })
        }

        /// A rendered document, sometimes with a few random bytes spliced in.
        fn document() -> impl Strategy<Value = Vec<u8>> {
            let top = prop::collection::vec((key(), doc()), 0..7).prop_map(Doc::Map);
            let splice = prop::option::weighted(
                0.25,
                (any::<Index>(), prop::collection::vec(any::<u8>(), 1..6)),
            );
            (top, splice).prop_map(|(doc, splice)| {
                let mut text = String::new();
                doc.render(0, &mut text);
                let mut bytes = text.into_bytes();
                if let Some((at, junk)) = splice {
                    let at = at.index(bytes.len() + 1);
                    bytes.splice(at..at, junk);
                }
                bytes
            })
        }

        /// The minimal valid config with one line added to a section: near
        /// enough to valid that both outcomes are common.
        fn near_valid() -> impl Strategy<Value = Vec<u8>> {
            let sections = prop::sample::select(vec!["equinix", "direktiv"]);
            (sections, key(), scalar()).prop_map(|(section, key, value)| {
                minimal_with(section, &format!("{key}: {value}")).into_bytes()
            })
        }

        fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
            match load_bytes(bytes, &no_env, Overrides::default()) {
                Ok(loaded) => {
                    let e = &loaded.settings.equinix;
                    prop_assert!((1..=1000).contains(&e.per_page));
                    prop_assert!(e.concurrency >= 1 && !e.poll_interval.is_zero());
                    prop_assert!(e.request_timeout <= e.sweep_timeout);
                }
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    for problem in &problems {
                        prop_assert!(!problem.to_string().trim().is_empty());
                    }
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn yaml_ish_documents_load_or_list_problems(bytes in document()) {
                check(&bytes)?;
            }

            #[test]
            fn near_valid_documents_load_or_list_problems(bytes in near_valid()) {
                check(&bytes)?;
            }

            #[test]
            fn arbitrary_bytes_load_or_list_problems(
                bytes in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                check(&bytes)?;
            }
        }
    }
}
