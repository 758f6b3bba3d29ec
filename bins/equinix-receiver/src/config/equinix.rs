//! The `equinix` section: the organization, the Metal token and how the
//! Metal API is polled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use event_dedupe::Baseline;
use url::Url;

use super::secrets::METAL_TOKEN_ENV;
use super::section::{Field, suggest};
use super::tree::{Node, Value};
use super::units::format_duration;
use super::urls::{plain_http_warning, trim_trailing_slash};
use super::walker::Walker;
use crate::event_types::EventTypes;
use crate::settings::{EquinixSettings, Levels};

/// The default Equinix Metal API base URL.
pub(super) const DEFAULT_API_URL: &str = "https://api.equinix.com/metal/v1";
/// The default of `equinix.maxPollInterval` (when `pollInterval` is shorter).
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The default of `equinix.coveredPollInterval` (when `maxPollInterval` is
/// shorter).
const DEFAULT_COVERED_POLL_INTERVAL: Duration = Duration::from_secs(600);

impl Walker<'_> {
    pub(super) fn equinix(&mut self, node: Option<&Node>) -> Option<EquinixSettings> {
        let mut section = self.open("equinix", node);
        let organization_id = section.get("organizationId");
        let token = section.get("packetAuthToken");
        let token_file = section.get("packetAuthTokenFile");
        let api_url = section.get("apiUrl");
        let poll_interval = section.get("pollInterval");
        let max_poll_interval = section.get("maxPollInterval");
        let covered_poll_interval = section.get("coveredPollInterval");
        let request_rate = section.get("requestRate");
        let per_page = section.get("perPage");
        let max_pages = section.get("maxPages");
        let concurrency = section.get("concurrency");
        let levels = section.get("levels");
        let start_from = section.get("startFrom");
        let inventory_refresh = section.get("inventoryRefresh");
        let timeout = section.get("timeout");
        let sweep_timeout = section.get("sweepTimeout");
        let max_response_size = section.get("maxResponseSize");
        let event_types = section.get("eventTypes");
        self.close(section);

        let organization_id = self.organization_id(&organization_id);

        let token = match self.secret(METAL_TOKEN_ENV, &token_file, &token) {
            Ok(Some((token, _))) => Some(token),
            Ok(None) => {
                self.problem(
                    &token.path,
                    token.line(),
                    format!(
                        "no Equinix Metal token: set `equinix.packetAuthToken`, \
                         `equinix.packetAuthTokenFile` or the environment variable {METAL_TOKEN_ENV}"
                    ),
                );
                None
            }
            Err(()) => None,
        };

        let url = match api_url.node {
            Some(n) if n.value != Value::Null => self
                .http_url(
                    &api_url,
                    DEFAULT_API_URL,
                    &format!(
                        "give the Metal token in `equinix.packetAuthToken`, \
                         `equinix.packetAuthTokenFile` or {METAL_TOKEN_ENV}"
                    ),
                )
                .map(trim_trailing_slash),
            _ => Some(Url::parse(DEFAULT_API_URL).expect("the default API URL is valid")),
        };

        if let Some(warning) = url
            .as_ref()
            .and_then(|url| plain_http_warning(&api_url.path, url, "Metal token"))
        {
            self.warnings.push(warning);
        }

        let poll_interval = self.duration(&poll_interval, Duration::from_secs(10), false);
        // Unset, each interval is its default or the one before it, whichever
        // is longer: a long `pollInterval` alone stays valid.
        let max_poll_interval = self.at_least(
            &max_poll_interval,
            DEFAULT_MAX_POLL_INTERVAL.max(poll_interval),
            ("equinix.pollInterval", poll_interval),
            "set it to `equinix.pollInterval` or longer (equal reads every list every sweep)",
        );
        let covered_poll_interval = self.at_least(
            &covered_poll_interval,
            DEFAULT_COVERED_POLL_INTERVAL.max(max_poll_interval),
            ("equinix.maxPollInterval", max_poll_interval),
            "set it to `equinix.maxPollInterval` or longer",
        );
        let request_rate = self.positive_number(&request_rate, "requests per second, such as `5`");
        let per_page = self.integer(&per_page, 100, 1, 1000);
        let max_pages = self.integer(&max_pages, 10, 1, 10_000);
        let concurrency = self.integer(&concurrency, 8, 1, 256);
        let levels = self.levels(&levels);
        let start_from = self.start_from(&start_from);
        let inventory_refresh = self.duration(&inventory_refresh, Duration::from_secs(300), false);
        let request_timeout = self.duration(&timeout, Duration::from_secs(30), false);
        let sweep_timeout_value = self.duration(&sweep_timeout, Duration::from_secs(300), false);
        let max_response_size =
            self.byte_size(&max_response_size, metal_events::DEFAULT_MAX_RESPONSE_SIZE);
        if request_timeout > sweep_timeout_value {
            let line = timeout.node.or(sweep_timeout.node).map_or(0, |n| n.line);
            self.problem(
                &timeout.path,
                line,
                format!(
                    "{} is longer than `equinix.sweepTimeout` ({}): one request cannot take longer \
                     than the whole sweep",
                    format_duration(request_timeout),
                    format_duration(sweep_timeout_value)
                ),
            );
        }

        let event_types = self.event_types(&event_types);

        Some(EquinixSettings {
            organization_id: organization_id?,
            token: token?,
            api_url: url?,
            poll_interval,
            max_poll_interval,
            covered_poll_interval,
            request_rate,
            per_page,
            max_pages,
            concurrency: concurrency as usize,
            levels,
            start_from,
            inventory_refresh,
            request_timeout,
            sweep_timeout: sweep_timeout_value,
            max_response_size,
            event_types,
        })
    }

    fn organization_id(&mut self, field: &Field<'_>) -> Option<String> {
        match field.node {
            None => {
                self.problem(
                    &field.path,
                    0,
                    "is missing: set it to your organization's UUID (Metal console, Organization settings)",
                );
                None
            }
            Some(n) if n.value == Value::Null => {
                self.problem(&field.path, n.line, "is empty: set it to your organization's UUID");
                None
            }
            Some(n) => self
                .nonempty_string(field, "set it to your organization's UUID")
                .filter(|id| {
                    let bad = id.starts_with('<') || id.chars().any(|c| c.is_whitespace() || c == '/');
                    if bad {
                        self.problem(
                            &field.path,
                            n.line,
                            format!("`{id}` is not an organization id: set it to your organization's UUID"),
                        );
                    }
                    !bad
                }),
        }
    }

    fn event_types(&mut self, field: &Field<'_>) -> EventTypes {
        const EXAMPLE: &str = "`[\"provisioning.*\", \"instance.deleted\"]`";
        let path = field.path.as_str();
        let Some(items) = self.list(field, &format!("a list of type patterns such as {EXAMPLE}"))
        else {
            return EventTypes::default();
        };
        if items.is_empty() {
            self.problem(
                path,
                field.line(),
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
                    path,
                    item,
                    "a type pattern in quotes, such as \"provisioning.*\"",
                );
                continue;
            };
            let pattern = text.trim();
            if pattern.is_empty() {
                self.problem(
                    path,
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

    fn levels(&mut self, field: &Field<'_>) -> Levels {
        const NAMES: &[&str] = &["project", "device", "organization"];
        let path = field.path.as_str();
        let Some(items) = self.list(field, "a list of levels such as `[project, device]`") else {
            return Levels::default();
        };
        let mut levels = Levels {
            project: false,
            device: false,
            organization: false,
        };
        let mut ok = true;
        for item in items {
            let Value::Str(name) = &item.value else {
                self.wrong_type(path, item, "a level name (project, device or organization)");
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
                        path,
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
                path,
                field.line(),
                "is empty: name at least one of project, device, organization (or remove the key \
                 for project and device)",
            );
        }
        if ok { levels } else { Levels::default() }
    }

    fn start_from(&mut self, field: &Field<'_>) -> Baseline {
        let (path, Some(node)) = (field.path.as_str(), field.node) else {
            return Baseline::default();
        };
        let text = match &node.value {
            Value::Null => return Baseline::default(),
            Value::Str(s) => s.trim().to_owned(),
            _ => {
                self.wrong_type(path, node, "`now`, `all` or an RFC 3339 instant");
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
                            "{path} is in the future ({text}): nothing before it will be sent"
                        ));
                    }
                    Baseline::At(at)
                }
                Err(_) => {
                    self.problem(
                        path,
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
}

impl Walker<'_> {
    /// A duration no shorter than `floor` (the key named, and its value);
    /// `default` when unset.
    fn at_least(
        &mut self,
        field: &Field<'_>,
        default: Duration,
        (floor_key, floor): (&str, Duration),
        fix: &str,
    ) -> Duration {
        let value = self.duration(field, default, false);
        if value < floor {
            let line = field.node.map_or(0, |n| n.line);
            self.problem(
                &field.path,
                line,
                format!(
                    "{} is shorter than `{floor_key}` ({}): {fix}",
                    format_duration(value),
                    format_duration(floor)
                ),
            );
            return floor;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, minimal_with, problems};

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
}
