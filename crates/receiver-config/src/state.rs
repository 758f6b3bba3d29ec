//! The `state` section: where the dedupe state and the dead letters live, a
//! file or PostgreSQL (`state.postgres`, high availability).

use std::path::PathBuf;
use std::time::Duration;

use event_dedupe::postgres::{DEFAULT_SCHEMA, PostgresOptions};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::Overrides;
use super::secrets::STATE_POSTGRES_URL_ENV;
use super::tree::Node;
use super::walker::Walker;
use crate::settings::{PostgresSettings, StateSettings};

/// `state.postgres.leaseDuration` without the key.
const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// The shortest lease: renewals every third of it must fit a slow database.
const MIN_LEASE: Duration = Duration::from_secs(2);
/// What a database URL looks like, for messages.
const URL_EXAMPLE: &str =
    "postgres://equinix_receiver:<password>@postgres.example:5432/equinix_receiver?sslmode=require";

impl Walker<'_> {
    pub(super) fn state(&mut self, node: Option<&Node>, overrides: Overrides) -> StateSettings {
        let mut section = self.open("state", node);
        let state_path = section.get("path");
        let overlap = section.get("overlap");
        let dead_letter = section.get("deadLetterPath");
        let dead_letter_max = section.get("deadLetterMax");
        let postgres = section.get("postgres");
        self.close(section);
        let postgres = self.postgres(postgres.node);

        let path = self.optional_string(&state_path).map(PathBuf::from);
        if path.is_some() && postgres.is_some() {
            self.problem(
                &state_path.path,
                state_path.line(),
                "`state.path` and `state.postgres` are both set (the URL may come from \
                 STATE_POSTGRES_URL): the state lives in one place. Remove `state.path` to keep \
                 it in PostgreSQL (move an existing file there once with `equinix-receiver \
                 --import-state <state.json> <config>`), or remove `state.postgres` and unset \
                 STATE_POSTGRES_URL to keep the file",
            );
        }
        if let Some(p) = &path
            && p.is_dir()
        {
            self.problem(
                &state_path.path,
                state_path.line(),
                format!(
                    "`{}` is a directory: give the path of a file, e.g. `{}`",
                    p.display(),
                    p.join("state.json").display()
                ),
            );
        }
        let overlap = self.duration(&overlap, Duration::from_secs(600), false);
        let dead_letter_path = self.optional_string(&dead_letter).map(PathBuf::from);
        if let Some(p) = &dead_letter_path {
            if p.is_dir() {
                self.problem(
                    &dead_letter.path,
                    dead_letter.line(),
                    format!(
                        "`{}` is a directory: give the path of a file, e.g. `{}`",
                        p.display(),
                        p.join("dead-letter.jsonl").display()
                    ),
                );
            } else if path.as_ref() == Some(p) {
                self.problem(
                    &dead_letter.path,
                    dead_letter.line(),
                    "is the state file itself: give the dead letters a file of their own, or \
                     leave the key out to keep them beside the state",
                );
            }
        }
        let dead_letter_max = self.integer(
            &dead_letter_max,
            receiver_engine::DeadLetters::DEFAULT_MAX,
            1,
            receiver_engine::DeadLetters::MAX_MAX,
        );
        StateSettings {
            path,
            overlap,
            dead_letter_path,
            dead_letter_max,
            reset_corrupt: overrides.reset_state,
            postgres,
        }
    }

    /// `state.postgres`: `Some` when a URL is given (the environment alone
    /// is enough), validated without ever showing it.
    fn postgres(&mut self, node: Option<&Node>) -> Option<PostgresSettings> {
        let mut section = self.open("state.postgres", node);
        let url = section.get("url");
        let url_file = section.get("urlFile");
        let lease_duration = section.get("leaseDuration");
        let schema = section.get("schema");
        let name = section.get("name");
        self.close(section);

        let lease_field = lease_duration;
        let lease_duration = self.duration(&lease_field, DEFAULT_LEASE, false);
        if lease_duration < MIN_LEASE {
            self.problem(
                &lease_field.path,
                lease_field.line(),
                "must be at least `2s`: a leader renews every third of it (the default is `15s`)",
            );
        }
        let schema_line = schema.line();
        let schema = self
            .optional_string(&schema)
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        // The store's own rules, checked here so that a bad value is a config
        // error (exit 78), not a failure at start.
        let example = SecretString::from("postgres://localhost/x");
        if let Err(error) =
            PostgresOptions::new(example.clone(), "x").and_then(|o| o.with_schema(&schema))
        {
            self.problem(
                "state.postgres.schema",
                schema_line,
                format!("{error} (the default is `{DEFAULT_SCHEMA}`)"),
            );
        }
        let name_line = name.line();
        let name = self.optional_string(&name);
        if let Some(given) = &name
            && let Err(error) = PostgresOptions::new(example.clone(), "x")
                .and_then(|o| o.with_deployment(given.clone()))
        {
            self.problem(
                "state.postgres.name",
                name_line,
                format!(
                    "{error} (the default is the Direktiv endpoint's host and path, so each \
                     deployment of an organization keeps its own state)"
                ),
            );
        }
        let (url, _) = self
            .secret(STATE_POSTGRES_URL_ENV, &url_file, &url)
            .ok()??;
        // The store reads the URL (libpq's `sslmode` and all); its messages
        // never show the password, and the URL is never repeated.
        let checked = PostgresOptions::new(url.clone(), "x")
            .err()
            .map(|e| e.to_string());
        let parsed = Url::parse(url.expose_secret()).ok();
        if let Some(why) = checked.or_else(|| parsed.is_none().then(String::new)) {
            self.problem(
                "state.postgres.url",
                0,
                format!(
                    "the database URL (from STATE_POSTGRES_URL, state.postgres.urlFile or \
                     state.postgres.url) is not usable{}{why}: write it like `{URL_EXAMPLE}`",
                    if why.is_empty() { "" } else { ": " }
                ),
            );
            return None;
        }
        let parsed = parsed?;
        let mut passwords = Vec::new();
        if let Some(written) = parsed.password() {
            passwords.push(SecretString::from(written.to_owned()));
            let decoded = percent_encoding::percent_decode_str(written).decode_utf8_lossy();
            if decoded != written {
                passwords.push(SecretString::from(decoded.into_owned()));
            }
        }
        Some(PostgresSettings {
            url,
            passwords,
            lease_duration,
            schema,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::ExposeSecret;

    use super::super::tests::{MINIMAL, load, load_with_env, problems};
    use super::*;
    use receiver_engine::Scrubber;

    const URL: &str = "postgres://receiver:pa%2Fss-w0rd@db.example:5432/receiver?sslmode=require";

    fn with_state(state: &str) -> String {
        format!("{MINIMAL}state:\n{state}")
    }

    #[test]
    fn postgres_keys_have_their_defaults_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://from-file@db/x\n").unwrap();
        let yaml = with_state(&format!(
            "  postgres:\n    url: postgres://inline@db/x\n    urlFile: {}\n",
            file.display()
        ));
        let pg = load(&yaml).unwrap().settings.state.postgres.unwrap();
        assert_eq!(pg.url.expose_secret(), "postgres://from-file@db/x");
        assert_eq!(pg.lease_duration, Duration::from_secs(15));
        assert_eq!(pg.schema, "equinix_receiver");

        let pg = load_with_env(&yaml, &[(STATE_POSTGRES_URL_ENV, URL)])
            .unwrap()
            .settings
            .state
            .postgres
            .unwrap();
        assert_eq!(pg.url.expose_secret(), URL);

        // The environment alone turns it on; without any URL it is off.
        let alone = load_with_env(MINIMAL, &[(STATE_POSTGRES_URL_ENV, URL)]).unwrap();
        assert!(alone.settings.state.postgres.is_some());
        assert!(load(MINIMAL).unwrap().settings.state.postgres.is_none());

        let yaml = with_state(
            "  postgres:\n    url: postgres://db/x\n    leaseDuration: 3s\n    schema: ha_test_1\n",
        );
        let pg = load(&yaml).unwrap().settings.state.postgres.unwrap();
        assert_eq!(
            (pg.lease_duration, pg.schema.as_str()),
            (Duration::from_secs(3), "ha_test_1")
        );
        assert_eq!(pg.name, None);

        // The deployment: as given, else the Direktiv endpoint's host and path.
        let yaml = with_state("  postgres:\n    url: postgres://db/x\n    name: staging\n");
        let loaded = load(&yaml).unwrap().settings;
        let pg = loaded.state.postgres.as_ref().unwrap();
        assert_eq!(pg.deployment(&loaded.direktiv.endpoint), "staging");
        let endpoint = url::Url::parse("https://user:pw@direktiv.example:8443/api/x?q=1").unwrap();
        let unnamed = PostgresSettings {
            name: None,
            ..pg.clone()
        };
        assert_eq!(unnamed.deployment(&endpoint), "direktiv.example:8443/api/x");
    }

    #[test]
    fn bad_postgres_values_are_config_errors() {
        let cases = [
            (
                "    leaseDuration: 1s\n",
                "state.postgres.leaseDuration (line 9): must be at least `2s`",
            ),
            (
                "    schema: Bad-Name\n",
                "state.postgres.schema (line 9): invalid PostgreSQL options: schema \"Bad-Name\"",
            ),
            ("    schema: pg_x\n", "is not a plain identifier"),
            ("    lease: 3s\n", "state.postgres.lease"),
            (
                "    name: \"a\\tb\"\n",
                "state.postgres.name (line 9): invalid PostgreSQL options: deployment name",
            ),
        ];
        for (line, expected) in cases {
            let yaml = with_state(&format!("  postgres:\n    url: postgres://db/x\n{line}"));
            let text = problems(&yaml).join("\n");
            assert!(text.contains(expected), "{line}: {text}");
        }
    }

    #[test]
    fn a_state_path_beside_postgres_names_both_keys_and_the_fix() {
        let yaml = with_state("  path: /tmp/state.json\n  postgres:\n    url: postgres://db/x\n");
        let text = problems(&yaml).join("\n");
        assert!(
            text.starts_with("state.path (line 7): `state.path` and `state.postgres`"),
            "{text}"
        );
        assert!(text.contains("--import-state"), "{text}");
        // The same when the URL comes from the environment alone.
        let yaml = with_state("  path: /tmp/state.json\n");
        let err = load_with_env(&yaml, &[(STATE_POSTGRES_URL_ENV, URL)]).unwrap_err();
        assert!(err[0].to_string().contains("`state.postgres`"), "{err:?}");
    }

    #[test]
    fn the_password_is_never_shown_and_is_scrubbed() {
        // Not a postgres URL: the problem says so without the URL.
        for bad in [
            "mysql://u:s3cr3t-pw@db/x",
            "postgres:s3cr3t-pw",
            "postgres://u:s3cr3t-pw@db/x?sslmode=sometimes",
        ] {
            let err = load_with_env(MINIMAL, &[(STATE_POSTGRES_URL_ENV, bad)]).unwrap_err();
            let text = err.iter().map(ToString::to_string).collect::<String>();
            assert!(text.contains("postgres://"), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        let loaded = load_with_env(MINIMAL, &[(STATE_POSTGRES_URL_ENV, URL)]).unwrap();
        let summary = crate::summary(&loaded.settings);
        assert!(
            summary.ends_with(
                "state postgres db.example/receiver (schema equinix_receiver, deployment \
                 127.0.0.1:9/api/namespaces/ops/broadcast, lease 15s)"
            ),
            "{summary}"
        );
        // Both the written and the decoded password are scrubbed, as is the URL.
        let scrubber = Arc::new(Scrubber::new(loaded.settings.secrets()));
        for leak in [URL, "pa%2Fss-w0rd", "pa/ss-w0rd"] {
            let line = format!("connecting failed: password {leak} refused");
            assert!(!scrubber.scrub(&line).contains("w0rd"), "{leak}");
        }
    }
}
