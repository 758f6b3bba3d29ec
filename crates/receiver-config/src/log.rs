//! The `log` section: the format and the level or filter of the log.

use super::section::suggest;
use super::tree::Node;
use super::walker::Walker;
use crate::settings::{LogFormat, LogSettings};

impl Walker<'_> {
    pub(super) fn log(&mut self, node: Option<&Node>) -> LogSettings {
        let mut section = self.open("log", node);
        let format_key = section.get("format");
        let level_key = section.get("level");
        self.close(section);

        let format = match format_key.node {
            None => LogFormat::default(),
            Some(n) => match self
                .string(&format_key.path, n)
                .map(|s| s.trim().to_ascii_lowercase())
            {
                None => LogFormat::default(),
                Some(s) if s == "text" => LogFormat::Text,
                Some(s) if s == "json" => LogFormat::Json,
                Some(s) => {
                    self.problem(
                        &format_key.path,
                        n.line,
                        format!("must be `text` or `json`, got `{s}`"),
                    );
                    LogFormat::default()
                }
            },
        };
        let level = match level_key.node {
            None => "info".to_owned(),
            Some(n) => match self.string(&level_key.path, n) {
                None => "info".to_owned(),
                Some(s) => match check_log_level(&s) {
                    Ok(filter) => filter,
                    Err(why) => {
                        self.problem(&level_key.path, n.line, why);
                        "info".to_owned()
                    }
                },
            },
        };
        LogSettings { format, level }
    }
}

/// Checks `log.level`: a level name (any case; `warning` means `warn`), or a
/// tracing filter directive such as `info,equinix_receiver=debug`. Returns the
/// filter to install.
pub(super) fn check_log_level(text: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
