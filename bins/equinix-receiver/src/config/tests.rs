//! The loader's tests that span sections, and the helpers every file's
//! tests share.

use std::net::SocketAddr;
use std::time::Duration;

use direktiv_broadcast::{Auth, AuthHeader};
use event_dedupe::Baseline;
use metal_cloudevents::MapOptions;
use secrecy::ExposeSecret;

use super::equinix::DEFAULT_API_URL;
use super::server::DEFAULT_LISTEN;
use super::*;
use crate::settings::{Levels, LogFormat};

mod properties;

pub(super) const OLD: &str = "\
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

pub(super) const MINIMAL: &str = "\
equinix:
  organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00
  packetAuthToken: metal-inline-token
direktiv:
  endpoint: http://127.0.0.1:9/api/namespaces/ops/broadcast
";

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn load(yaml: &str) -> Result<Loaded, Vec<Problem>> {
    load_bytes(yaml.as_bytes(), &no_env, Overrides::default())
}

pub(super) fn load_with_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, Vec<Problem>> {
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    load_bytes(yaml.as_bytes(), &env, Overrides::default())
}

/// The problems of a config that must fail, as displayed.
pub(super) fn problems(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(loaded) => panic!("expected problems, got {:?}", loaded.settings),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

/// What each displayed problem starts with: its key and line.
pub(super) fn keys_and_lines(problems: &[String]) -> Vec<&str> {
    problems
        .iter()
        .map(|p| p.split(':').next().unwrap_or_default())
        .collect()
}

pub(super) fn minimal_with(section: &str, line: &str) -> String {
    MINIMAL.replace(&format!("{section}:\n"), &format!("{section}:\n  {line}\n"))
}

/// Every key the loader knows, dotted (`direktiv.endpoint`).
fn all_keys() -> Vec<String> {
    walker::known_keys()
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
    assert_eq!(s.equinix.max_poll_interval, Duration::from_secs(60));
    assert_eq!(s.equinix.covered_poll_interval, Duration::from_secs(600));
    assert_eq!(s.equinix.request_rate, None);
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
    let text = include_str!("../../../../fixtures/config/full.yaml");
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
    assert_eq!(s.equinix.max_poll_interval, Duration::from_secs(120));
    assert_eq!(s.equinix.covered_poll_interval, Duration::from_secs(900));
    assert_eq!(s.equinix.request_rate, Some(20.0));
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
    let full = include_str!("../../../../fixtures/config/full.yaml");
    for key in all_keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(full.contains(&format!("{leaf}:")), "full.yaml lacks {key}");
    }
}

#[test]
fn every_key_is_documented() {
    let docs = include_str!("../../../../docs/configuration.md");
    for key in all_keys() {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/configuration.md lacks `{key}`"
        );
    }
}

#[test]
fn a_long_poll_interval_alone_raises_the_defaults_of_the_longer_intervals() {
    let s = load(&minimal_with("equinix", "pollInterval: 2m"))
        .unwrap()
        .settings;
    assert_eq!(s.equinix.max_poll_interval, Duration::from_secs(120));
    assert_eq!(s.equinix.covered_poll_interval, Duration::from_secs(600));
    let s = load(&minimal_with("equinix", "pollInterval: 20m"))
        .unwrap()
        .settings;
    assert_eq!(s.equinix.max_poll_interval, Duration::from_secs(1200));
    assert_eq!(s.equinix.covered_poll_interval, Duration::from_secs(1200));
    let s = load(&minimal_with("equinix", "requestRate: 2.5"))
        .unwrap()
        .settings;
    assert_eq!(s.equinix.request_rate, Some(2.5));
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
            "maxPollInterval: 5s",
            "5s is shorter than `equinix.pollInterval` (10s): set it to `equinix.pollInterval` or longer",
        ),
        ("equinix", "maxPollInterval: 0s", "greater than zero"),
        (
            "equinix",
            "coveredPollInterval: 30s",
            "30s is shorter than `equinix.maxPollInterval` (1m)",
        ),
        ("equinix", "requestRate: 0", "must be greater than zero"),
        ("equinix", "requestRate: -2.5", "must be greater than zero"),
        ("equinix", "requestRate: \"5\"", "without quotes"),
        ("equinix", "requestRate: fast", "must be a number"),
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
