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
use crate::settings::{EquinixSettings, Levels};
use receiver_engine::EventTypes;

/// The default Equinix Metal API base URL.
pub(super) const DEFAULT_API_URL: &str = "https://api.equinix.com/metal/v1";
/// The default of `equinix.maxPollInterval` (when `pollInterval` is shorter).
const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The default of `equinix.coveredPollInterval` (when `maxPollInterval` is
/// shorter).
const DEFAULT_COVERED_POLL_INTERVAL: Duration = Duration::from_secs(600);
/// The shortest `equinix.pollInterval`: a sweep a second already reads the
/// project and organization lists 86,400 times a day. Shorter intervals
/// served no deployment and, against an API without a rate limit, made
/// hundreds of requests a second.
pub(super) const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `equinix.pollInterval` with [`FAST_POLL_ENV`] set: for the
/// test harnesses and benchmarks, which poll local servers.
const MIN_FAST_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Set to `1`, this environment variable lets `equinix.pollInterval` go
/// below 1 s (down to 10 ms). Only tests and benchmarks
/// against local servers set it.
pub const FAST_POLL_ENV: &str = "EQUINIX_RECEIVER_ALLOW_FAST_POLL";
/// Below this `pollInterval`, without `equinix.requestRate`, a warning: the
/// Metal API documents no number for its rate limit (it answers 429 with
/// `X-RateLimit-*` headers), and a few lists every few seconds is already
/// more than the old receiver's 5 to 10 s sweeps.
const WARN_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// `equinix.requestRate`'s range, requests per second. Below one request
/// every 10 s, reading even one project's lists takes minutes a sweep (and
/// `1e-300` overflowed the pacing); above 1,000 a second the pace is no
/// limit at all (the API's own `X-RateLimit-*` headers still apply).
const REQUEST_RATE_RANGE: (f64, f64) = (0.1, 1000.0);

/// The longest `maxPollInterval` and `coveredPollInterval`: half the
/// tracker's source expiry (6 h), which forgets a list whose floor does not
/// move for that long.
const MAX_LIST_INTERVAL: Duration = Duration::from_secs(3 * 60 * 60);

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

        let poll_interval = self.poll_interval(&poll_interval);
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
        let request_rate = self.request_rate(&request_rate);
        if poll_interval < WARN_POLL_INTERVAL && request_rate.is_none() {
            self.warnings.push(format!(
                "equinix.pollInterval is {} and equinix.requestRate is not set: project, \
                 organization and active device lists are read that often; the Metal API's rate \
                 limit is not documented, so set equinix.requestRate (such as `5`) to stay \
                 under it",
                format_duration(poll_interval)
            ));
        }
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
                self.problem(
                    &field.path,
                    n.line,
                    "is empty: set it to your organization's UUID",
                );
                None
            }
            Some(n) => self
                .nonempty_string(field, "set it to your organization's UUID")
                .filter(|id| {
                    // Every Metal id is a UUID; the id goes into URL paths.
                    let ok = is_uuid(id);
                    if !ok {
                        self.problem(
                            &field.path,
                            n.line,
                            format!(
                                "`{id}` is not an organization id: set it to your \
                                 organization's UUID, such as \
                                 `7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00` (Metal console, \
                                 Organization settings)"
                            ),
                        );
                    }
                    ok
                })
                // Metal writes its ids in lowercase; a UUID is the same in
                // either case, and the CloudEvents' `orgid` matches the API's.
                .map(|id| id.to_ascii_lowercase()),
        }
    }

    /// `equinix.pollInterval`: at least [`MIN_POLL_INTERVAL`], or 10 ms
    /// with [`FAST_POLL_ENV`] set.
    fn poll_interval(&mut self, field: &Field<'_>) -> Duration {
        let default = Duration::from_secs(10);
        let value = self.duration(field, default, false);
        let fast = (self.env)(FAST_POLL_ENV).is_some_and(|v| v.trim() == "1");
        let floor = if fast {
            MIN_FAST_POLL_INTERVAL
        } else {
            MIN_POLL_INTERVAL
        };
        if value >= floor {
            return value;
        }
        self.problem(
            &field.path,
            field.line(),
            format!(
                "{} is shorter than {}: every sweep reads the project and organization lists, \
                 so a shorter interval only adds load on the Metal API; set it to `1s` or longer \
                 (the default is `10s`)",
                format_duration(value),
                format_duration(floor)
            ),
        );
        default
    }

    /// `equinix.requestRate`, within [`REQUEST_RATE_RANGE`]; `None` when unset.
    fn request_rate(&mut self, field: &Field<'_>) -> Option<f64> {
        const EXPECTED: &str = "requests per second, such as `5`";
        let rate = self.positive_number(field, EXPECTED)?;
        let (min, max) = REQUEST_RATE_RANGE;
        if (min..=max).contains(&rate) {
            return Some(rate);
        }
        self.problem(
            &field.path,
            field.line(),
            format!(
                "must be between {min} and {max} {EXPECTED}, got {rate:?}: below one request \
                 every 10 s a sweep takes minutes, above {max} it limits nothing; leave it out \
                 for no limit"
            ),
        );
        None
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

/// `8-4-4-4-12` hexadecimal digits, as every Metal id is written.
fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
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
        if value > MAX_LIST_INTERVAL && field.node.is_some() {
            let line = field.node.map_or(0, |n| n.line);
            self.problem(
                &field.path,
                line,
                format!(
                    "{} is longer than {}: a list left unread for the state's source expiry \
                     ({}) would be forgotten, and events it shows later could be settled unsent",
                    format_duration(value),
                    format_duration(MAX_LIST_INTERVAL),
                    format_duration(event_dedupe::TrackerOptions::default().source_expiry)
                ),
            );
            return MAX_LIST_INTERVAL.max(floor);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, load, load_with_env, minimal_with, problems};
    use super::*;

    #[test]
    fn the_organization_id_is_a_uuid() {
        assert!(is_uuid("7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00"));
        assert!(is_uuid("7B1E3A52-4C55-4A1E-9F0B-2A8C5D3E1F00"));
        let upper = MINIMAL.replace(
            "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00",
            "7B1E3A52-4C55-4A1E-9F0B-2A8C5D3E1F00",
        );
        assert_eq!(
            load(&upper).unwrap().settings.equinix.organization_id,
            "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00"
        );
        let org = "organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00";
        for value in [
            "'..'",
            "a/b",
            "x",
            "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f0",
            "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00x",
            "7b1e3a52x4c55-4a1e-9f0b-2a8c5d3e1f00",
            "7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f0g",
            "'{7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00}'",
        ] {
            let found = problems(&MINIMAL.replace(org, &format!("organizationId: {value}")));
            assert_eq!(found.len(), 1, "{value}: {found:?}");
            assert!(
                found[0].starts_with("equinix.organizationId (line 2): `")
                    && found[0].contains("is not an organization id"),
                "{value}: {found:?}"
            );
        }
    }

    #[test]
    fn request_rate_is_between_a_tenth_and_a_thousand() {
        for ok in ["0.1", "5", "1000"] {
            let e = load(&minimal_with("equinix", &format!("requestRate: {ok}")))
                .unwrap()
                .settings
                .equinix;
            assert_eq!(e.request_rate, Some(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["1e-300", "0.09", "1001", "1e300"] {
            let found = problems(&minimal_with("equinix", &format!("requestRate: {bad}")));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(
                found[0].starts_with("equinix.requestRate (line 2): must be between 0.1 and 1000"),
                "{bad}: {found:?}"
            );
        }
    }

    #[test]
    fn poll_interval_is_a_second_or_more_unless_tests_ask_for_less() {
        for bad in ["1ms", "999ms"] {
            let found = problems(&minimal_with("equinix", &format!("pollInterval: {bad}")));
            assert_eq!(
                found,
                [format!(
                    "equinix.pollInterval (line 2): {bad} is shorter than 1s: every sweep reads \
                     the project and organization lists, so a shorter interval only adds load \
                     on the Metal API; set it to `1s` or longer (the default is `10s`)"
                )]
            );
        }
        let loaded = load(&minimal_with("equinix", "pollInterval: 1s")).unwrap();
        assert_eq!(
            loaded.settings.equinix.poll_interval,
            Duration::from_secs(1)
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("equinix.requestRate is not set")),
            "{:?}",
            loaded.warnings
        );
        // With a pace set, or at the default interval, no warning.
        for quiet in [
            minimal_with(
                "equinix",
                "pollInterval: 1s
  requestRate: 5",
            ),
            MINIMAL.to_owned(),
        ] {
            let loaded = load(&quiet).unwrap();
            assert!(
                !loaded.warnings.iter().any(|w| w.contains("requestRate")),
                "{:?}",
                loaded.warnings
            );
        }
        // The escape hatch of the test harnesses: down to 10 ms.
        let yaml = minimal_with("equinix", "pollInterval: 100ms");
        let loaded = load_with_env(&yaml, &[(FAST_POLL_ENV, "1")]).unwrap();
        assert_eq!(
            loaded.settings.equinix.poll_interval,
            Duration::from_millis(100)
        );
        let yaml = minimal_with("equinix", "pollInterval: 1ms");
        assert!(load_with_env(&yaml, &[(FAST_POLL_ENV, "1")]).is_err());
        assert!(load_with_env(&yaml, &[(FAST_POLL_ENV, "0")]).is_err());
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
}
