//! Secrets: the Equinix Metal and Direktiv tokens, from the environment, a
//! token file or the config itself, checked without ever being shown.

use std::path::Path;

use secrecy::SecretString;

use super::section::Field;
use super::walker::Walker;
use crate::small_file::{self, SmallFileError};

/// The environment variable that holds the Equinix Metal token.
pub(super) const METAL_TOKEN_ENV: &str = "METAL_AUTH_TOKEN";
/// The environment variable that holds the Direktiv token.
pub(super) const DIREKTIV_TOKEN_ENV: &str = "DIREKTIV_TOKEN";
/// The environment variable that holds the PostgreSQL URL (`state.postgres`).
pub(super) const STATE_POSTGRES_URL_ENV: &str = "STATE_POSTGRES_URL";
/// A token file larger than this is refused (a token is under 100 bytes).
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Where a secret came from, to pick the default auth header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenSource {
    Env,
    File,
    Inline,
    ApiKey,
}

impl Walker<'_> {
    /// Checks a secret is usable as an HTTP header value, without ever
    /// showing it.
    pub(super) fn check_secret(
        &mut self,
        path: &str,
        line: u64,
        secret: &str,
        source: &str,
    ) -> bool {
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
    pub(super) fn secret(
        &mut self,
        env_name: &str,
        file: &Field<'_>,
        inline: &Field<'_>,
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
        if let Some(name) = self.optional_string(file) {
            return match self.token_file(&file.path, file.line(), &name) {
                Some(token) => Ok(Some((token.into(), TokenSource::File))),
                None => Err(()),
            };
        }
        if let Some(token) = self.optional_string(inline) {
            return if self.check_secret(&inline.path, inline.line(), &token, "the value") {
                Ok(Some((token.into(), TokenSource::Inline)))
            } else {
                Err(())
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::super::tests::{MINIMAL, load, load_with_env, minimal_with};
    use super::*;

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
}
