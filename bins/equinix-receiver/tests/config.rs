//! Process tests of config loading: the built binary run with `--check` on
//! good and bad config files, as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_equinix-receiver");

/// A valid config whose URLs point at the discard port: `--check` must make
/// no request, so it still succeeds.
const VALID: &str = "\
equinix:
  organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00
  packetAuthToken: metal-SECRET-inline
  apiUrl: http://127.0.0.1:9/metal/v1
direktiv:
  endpoint: http://127.0.0.1:9/api/namespaces/ops/broadcast
";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/config")
        .join(name)
}

/// Runs the binary with a clean environment (no token variables, no RUST_LOG).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("METAL_AUTH_TOKEN")
        .env_remove("DIREKTIV_TOKEN")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check_path(path: &Path, env: &[(&str, &str)]) -> Outcome {
    let output = run(&["--check", path.to_str().unwrap()], env);
    let outcome = Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !outcome.stderr.contains("panicked"),
        "the binary panicked:\n{}",
        outcome.stderr
    );
    outcome
}

/// Writes `contents` to a temporary config file and runs `--check` on it.
fn check_bytes(contents: &[u8], env: &[(&str, &str)]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, contents).unwrap();
    check_path(&path, env)
}

fn check(contents: &str) -> Outcome {
    check_bytes(contents.as_bytes(), &[])
}

/// Asserts the config was refused with 78 and a message containing `needle`.
fn assert_refused(outcome: &Outcome, needle: &str) {
    assert_eq!(outcome.code, Some(78), "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(needle),
        "stderr lacks {needle:?}:\n{}",
        outcome.stderr
    );
    assert!(outcome.stdout.is_empty(), "stdout: {}", outcome.stdout);
    for line in outcome.stderr.lines() {
        assert!(line.starts_with("error: "), "unprefixed line: {line}");
    }
}

/// `VALID` with `line` added under `section:`.
fn valid_with(section: &str, line: &str) -> String {
    VALID.replace(&format!("{section}:\n"), &format!("{section}:\n  {line}\n"))
}

#[test]
fn the_old_config_works_unchanged() {
    let outcome = check_path(&fixture("old-receiver.yaml"), &[]);
    assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
    assert!(
        outcome
            .stdout
            .starts_with("config OK: organization 7b1e3a52"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .contains("auth headers Direktiv-Token and Direktiv-Api-Key"),
        "{}",
        outcome.stdout
    );
    assert_eq!(outcome.stdout.lines().count(), 1);
    // The old file sets both token and apikey: that is allowed, with a warning.
    assert!(
        outcome
            .stderr
            .contains("warning: direktiv.apikey is ignored"),
        "{}",
        outcome.stderr
    );
    for secret in ["fake-metal-token", "fake-direktiv-token", "fake-old-apikey"] {
        assert!(!outcome.stdout.contains(secret) && !outcome.stderr.contains(secret));
    }
}

#[test]
fn a_valid_config_pointing_at_the_discard_port_checks_ok() {
    let outcome = check(VALID);
    assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("no auth header"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn config_flag_works_like_the_positional_path() {
    let output = run(
        &[
            "--check",
            "--config",
            fixture("old-receiver.yaml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn malformed_configs_exit_78_naming_the_problem() {
    let org = "organizationId: 7b1e3a52-4c55-4a1e-9f0b-2a8c5d3e1f00";
    let cases: Vec<(String, &str)> = vec![
        // Wrong types.
        (valid_with("equinix", "perPage: \"100\""), "equinix.perPage"),
        (valid_with("equinix", "levels: 3"), "equinix.levels"),
        (
            VALID.replace(org, "organizationId: [a, b]"),
            "equinix.organizationId",
        ),
        (
            valid_with("direktiv", "insecureSkipVerify: sometimes"),
            "direktiv.insecureSkipVerify",
        ),
        (
            format!("{VALID}server: yes\n"),
            "server (line 7): must be a mapping of keys",
        ),
        // Unknown keys, with a suggestion.
        (
            valid_with("equinix", "pollintervall: 10s"),
            "did you mean `equinix.pollInterval`?",
        ),
        (
            valid_with("direktiv", "event_on_error: true"),
            "did you mean `direktiv.event-on-error`?",
        ),
        // Empty or missing values.
        (
            VALID.replace(org, "organizationId: \"\""),
            "equinix.organizationId (line 2): is empty",
        ),
        (
            VALID.replace("metal-SECRET-inline", "\"\""),
            "no Equinix Metal token",
        ),
        (
            VALID.replace("  packetAuthToken: metal-SECRET-inline\n", ""),
            "METAL_AUTH_TOKEN",
        ),
        (
            VALID.replace("http://127.0.0.1:9/api/namespaces/ops/broadcast", ""),
            "direktiv.endpoint",
        ),
        // Bad URLs.
        (
            VALID.replace("http://127.0.0.1:9/api", "ftp://127.0.0.1:9/api"),
            "http or https",
        ),
        (
            VALID.replace("http://127.0.0.1:9/metal/v1", "127.0.0.1:9"),
            "equinix.apiUrl",
        ),
        (
            VALID.replace("http://127.0.0.1:9/metal/v1", "https://"),
            "equinix.apiUrl",
        ),
        // Durations: negative, zero, garbage, no unit.
        (
            valid_with("equinix", "pollInterval: -10s"),
            "must not be negative",
        ),
        (
            valid_with("equinix", "pollInterval: 0s"),
            "must be greater than zero",
        ),
        (valid_with("direktiv", "timeout: soon"), "is not a duration"),
        (
            valid_with("equinix", "inventoryRefresh: 300"),
            "a bare number has no unit",
        ),
        (format!("{VALID}shutdownGrace: -1s\n"), "shutdownGrace"),
        // Ranges and names.
        (
            valid_with("equinix", "perPage: 0"),
            "between 1 and 1000, got 0",
        ),
        (
            valid_with("equinix", "perPage: 5000"),
            "between 1 and 1000, got 5000",
        ),
        (
            valid_with("equinix", "concurrency: 0"),
            "equinix.concurrency",
        ),
        (
            valid_with("equinix", "levels: [projct]"),
            "did you mean `project`?",
        ),
        (valid_with("equinix", "startFrom: last-week"), "RFC 3339"),
        (
            format!("{VALID}log:\n  level: loud\n"),
            "unknown level `loud`",
        ),
        (format!("{VALID}log:\n  format: yaml\n"), "`text` or `json`"),
        (
            format!("{VALID}server:\n  listen: \"9464\"\n"),
            "IP address and port",
        ),
        (
            valid_with("direktiv", "tokenFile: /nonexistent/direktiv-token"),
            "does not exist",
        ),
        // Not a config at all.
        (
            "- equinix\n- direktiv\n".to_owned(),
            "must be a mapping of sections",
        ),
        (String::new(), "the config file is empty"),
        (
            "equinix:\n  organizationId: [unclosed\n".to_owned(),
            "YAML syntax error",
        ),
        (
            format!("{VALID}log:\n  level: info\n  level: info\n"),
            "given twice",
        ),
    ];
    assert!(cases.len() >= 20);
    for (yaml, needle) in &cases {
        let outcome = check(yaml);
        assert_refused(&outcome, needle);
    }
}

#[test]
fn a_yaml_syntax_error_names_line_and_column() {
    let outcome = check("equinix:\n  organizationId: x\n bad indent: [\n");
    assert_refused(&outcome, "YAML syntax error at column");
    assert!(outcome.stderr.contains("line 3"), "{}", outcome.stderr);
}

#[test]
fn a_file_that_is_not_utf8_is_refused() {
    let outcome = check_bytes(b"equinix:\n  organizationId: caf\xe9\n", &[]);
    assert_refused(&outcome, "not UTF-8");
    assert!(outcome.stderr.contains("line 2"), "{}", outcome.stderr);
}

#[test]
fn a_directory_or_a_missing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused(
        &check_path(dir.path(), &[]),
        "is a directory, not a config file",
    );
    let missing = dir.path().join("nope.yaml");
    assert_refused(&check_path(&missing, &[]), "does not exist");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "\
equinix:
  organizationId: \"\"
  pollintervall: 10s
  perPage: 5000
direktiv:
  endpoint: ftp://127.0.0.1:9/broadcast
  timeout: 10
log:
  level: chatty
";
    let outcome = check(yaml);
    assert_refused(&outcome, "equinix.organizationId (line 2)");
    for needle in [
        "equinix.pollintervall (line 3)",
        "equinix.perPage (line 4)",
        "equinix.packetAuthToken",
        "direktiv.endpoint (line 6)",
        "direktiv.timeout (line 7)",
        "log.level (line 9)",
        "7 problems",
    ] {
        assert!(
            outcome.stderr.contains(needle),
            "stderr lacks {needle}:\n{}",
            outcome.stderr
        );
    }
    assert_eq!(outcome.stderr.lines().count(), 8, "{}", outcome.stderr);
}

#[test]
fn the_environment_beats_the_file() {
    // No token in the file: the environment alone is enough.
    let yaml = VALID.replace("  packetAuthToken: metal-SECRET-inline\n", "");
    let outcome = check_bytes(yaml.as_bytes(), &[("METAL_AUTH_TOKEN", "metal-SECRET-env")]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);

    // An invalid inline token is never looked at when the environment has one.
    let yaml = VALID.replace("metal-SECRET-inline", "\"has a SECRET space\"");
    assert_refused(&check(&yaml), "HTTP header");
    let outcome = check_bytes(yaml.as_bytes(), &[("METAL_AUTH_TOKEN", "metal-SECRET-env")]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);

    // DIREKTIV_TOKEN turns on the auth header.
    let outcome = check_bytes(
        VALID.as_bytes(),
        &[("DIREKTIV_TOKEN", "direktiv-SECRET-env")],
    );
    assert!(
        outcome
            .stdout
            .contains("auth headers Direktiv-Token and Direktiv-Api-Key"),
        "{}",
        outcome.stdout
    );
    assert!(!outcome.stdout.contains("SECRET") && !outcome.stderr.contains("SECRET"));
}

#[test]
fn a_token_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "direktiv-SECRET-file\n").unwrap();
    let yaml = valid_with("direktiv", &format!("tokenFile: {}", token_file.display()));
    let outcome = check(&yaml);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert!(
        outcome
            .stdout
            .contains("auth headers Direktiv-Token and Direktiv-Api-Key"),
        "{}",
        outcome.stdout
    );

    std::fs::write(&token_file, "\n").unwrap();
    assert_refused(&check(&yaml), "is empty");
    std::fs::write(&token_file, "two SECRET words\n").unwrap();
    assert_refused(&check(&yaml), "HTTP header");
}

#[test]
fn no_token_ever_appears_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "direktiv-SECRET-file\n").unwrap();
    let env = [
        ("METAL_AUTH_TOKEN", "metal-SECRET-env"),
        ("DIREKTIV_TOKEN", "bad SECRET env"),
    ];
    let yamls = [
        VALID.to_owned(),
        valid_with(
            "direktiv",
            &format!(
                "tokenFile: {}\n  token: SECRET-inline",
                token_file.display()
            ),
        ),
        valid_with("direktiv", "token: \"Bearer SECRET\"\n  bogus: 1"),
        VALID.replace("metal-SECRET-inline", "\"<SECRET placeholder>\""),
    ];
    for yaml in &yamls {
        for env in [&env[..], &env[..1], &[]] {
            let outcome = check_bytes(yaml.as_bytes(), env);
            assert!(!outcome.stdout.contains("SECRET"), "{}", outcome.stdout);
            assert!(!outcome.stderr.contains("SECRET"), "{}", outcome.stderr);
        }
    }
}

#[cfg(feature = "demo")]
#[test]
fn no_config_path_exits_78_and_mentions_demo() {
    let output = run(&[], &[]);
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no config file given") && stderr.contains("--demo"),
        "{stderr}"
    );
    assert!(stderr.contains("Usage:"), "{stderr}");
}

/// The production build (`--no-default-features`, as deploy/Dockerfile builds
/// it) has no demo: `--demo` is a usage error that says so, and a missing
/// config does not send anyone to it.
#[cfg(not(feature = "demo"))]
#[test]
fn a_build_without_the_demo_says_so() {
    for args in [&["--demo"][..], &["--demo", "--demo-events", "3"]] {
        let output = run(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("this build has no demo") && stderr.contains("--no-default-features"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = run(&[], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("no config file given"), "{stderr}");
    assert!(!stderr.contains("--demo"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let config = fixture("old-receiver.yaml");
    let config = config.to_str().unwrap();
    for args in [
        &["--bogus"][..],
        &["--check", "--once", config],
        &["a.yaml", "--config", "b.yaml"],
    ] {
        let output = run(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let help = run(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "Exit codes:",
        "78",
        "METAL_AUTH_TOKEN",
        "DIREKTIV_TOKEN",
        "--dry-run",
    ] {
        assert!(text.contains(needle), "help lacks {needle}");
    }
    let version = run(&["--version"], &[]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("equinix-receiver 0."));
}

/// Runs `--check` on `yaml` and kills the child if it has not exited within
/// `limit`: a file the config names must never hang the receiver.
fn check_within(yaml: &str, limit: std::time::Duration) -> Outcome {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(BIN)
        .args(["--check", path.to_str().unwrap()])
        .env_remove("METAL_AUTH_TOKEN")
        .env_remove("DIREKTIV_TOKEN")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`--check` still running after {limit:?}:\n{yaml}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

#[test]
fn files_the_config_names_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let long = dir.path().join("long-token");
    std::fs::write(&long, "t".repeat(64 * 1024 + 1)).unwrap();
    let big_ca = dir.path().join("ca.pem");
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    pem.resize(1024 * 1024 + 1, b'A');
    std::fs::write(&big_ca, pem).unwrap();
    let show = |p: &Path| p.display().to_string();
    let cases = [
        (
            "equinix",
            "packetAuthTokenFile",
            "/dev/zero".to_owned(),
            "is not a regular file",
        ),
        (
            "direktiv",
            "tokenFile",
            show(&fifo),
            "is a named pipe (FIFO), not a regular file",
        ),
        (
            "equinix",
            "packetAuthTokenFile",
            show(dir.path()),
            "is a directory, not a regular file",
        ),
        ("direktiv", "tokenFile", show(&long), "is larger than 64KiB"),
        (
            "direktiv",
            "caFile",
            "/dev/zero".to_owned(),
            "is not a regular file",
        ),
        ("direktiv", "caFile", show(&big_ca), "is larger than 1MiB"),
    ];
    for (section, key, file, needle) in cases {
        let yaml = valid_with(section, &format!("{key}: \"{file}\""));
        let outcome = check_within(&yaml, std::time::Duration::from_secs(20));
        assert_refused(&outcome, needle);
        assert!(
            outcome.stderr.contains(&format!("{section}.{key}")) && outcome.stderr.contains(&file),
            "the message names the key and the file:\n{}",
            outcome.stderr
        );
    }
}

#[test]
fn a_config_that_is_not_a_regular_file_is_refused_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    for (path, needle) in [
        (fifo.as_path(), "named pipe (FIFO)"),
        (Path::new("/dev/zero"), "not a regular file"),
    ] {
        let mut child = Command::new(BIN)
            .args(["--check", path.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`--check {}` hung", path.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn credentials_in_urls_are_refused_without_being_shown() {
    let api = "http://127.0.0.1:9/metal/v1";
    let endpoint = "http://127.0.0.1:9/api/namespaces/ops/broadcast";
    let with = |url: &str, userinfo: &str| url.replace("http://", &format!("http://{userinfo}"));
    let cases = [
        (
            VALID.replace(api, &with(api, "alice-USER:hunter2-PASS@")),
            "equinix.apiUrl (line 4)",
            "equinix.packetAuthToken",
        ),
        (
            VALID.replace(api, &with(api, "alice-USER@")),
            "equinix.apiUrl (line 4)",
            "equinix.packetAuthToken",
        ),
        (
            VALID.replace(endpoint, &with(endpoint, "alice-USER:hunter2-PASS@")),
            "direktiv.endpoint (line 6)",
            "direktiv.token",
        ),
        (
            VALID.replace(endpoint, &with(endpoint, "alice-USER@")),
            "direktiv.endpoint (line 6)",
            "direktiv.token",
        ),
    ];
    for (yaml, key, fix) in &cases {
        let outcome = check(yaml);
        assert_refused(&outcome, key);
        assert!(outcome.stderr.contains(fix), "{}", outcome.stderr);
        assert!(outcome.stderr.contains("credentials"), "{}", outcome.stderr);
        for secret in ["alice-USER", "hunter2-PASS", "127.0.0.1"] {
            assert!(!outcome.stderr.contains(secret), "{}", outcome.stderr);
        }
    }
    // Other URL problems show the URL, but never its credentials.
    let bad_scheme = VALID.replace(api, "ftp://alice-USER:hunter2-PASS@127.0.0.1:9/metal/v1");
    let outcome = check(&bad_scheme);
    assert_refused(&outcome, "http or https");
    assert!(
        outcome.stderr.contains("127.0.0.1:9/metal/v1"),
        "{}",
        outcome.stderr
    );
    for secret in ["alice-USER", "hunter2-PASS"] {
        assert!(!outcome.stderr.contains(secret), "{}", outcome.stderr);
    }
}

#[test]
fn a_plain_http_api_url_to_a_remote_host_warns_that_the_token_is_unencrypted() {
    let remote = VALID.replace(
        "http://127.0.0.1:9/metal/v1",
        "http://metal-proxy.example.com/metal/v1",
    );
    let outcome = check(&remote);
    assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains(
            "warning: equinix.apiUrl uses plain http: the Metal token is sent unencrypted"
        ),
        "{}",
        outcome.stderr
    );
    // Loopback (a local proxy or simulator) and https do not warn.
    for yaml in [
        VALID.to_owned(),
        VALID.replace("http://127.0.0.1:9/metal/v1", "http://[::1]:9/metal/v1"),
        VALID.replace("http://127.0.0.1:9/metal/v1", "http://localhost:9/metal/v1"),
        VALID.replace(
            "http://127.0.0.1:9/metal/v1",
            "https://metal.example.com/v1",
        ),
    ] {
        let outcome = check(&yaml);
        assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
        assert!(
            !outcome.stderr.contains("Metal token"),
            "{}",
            outcome.stderr
        );
    }
}
