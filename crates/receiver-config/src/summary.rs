//! The one-line summary `--check` prints, and header names for people:
//! neither ever shows a secret.

use secrecy::ExposeSecret as _;

use super::units::format_duration;
use crate::settings::Settings;
use direktiv_broadcast::header_names;

/// A one-line summary of the settings for `--check`, without secrets.
pub fn summary(settings: &Settings) -> String {
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
    let state = match (&settings.state.postgres, &settings.state.path) {
        // Only the host and the database: never the user or the password.
        (Some(pg), _) => url::Url::parse(pg.url.expose_secret()).map_or_else(
            |_| "postgres".to_owned(),
            |url| {
                format!(
                    "postgres {}{} (schema {}, deployment {}, lease {})",
                    url.host_str().unwrap_or_default(),
                    url.path(),
                    pg.schema,
                    pg.deployment(&settings.direktiv.endpoint),
                    format_duration(pg.lease_duration)
                )
            },
        ),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => "default location".to_owned(),
    };
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

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, OLD, load, minimal_with};
    use super::*;

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
}
