//! Every value either works or is refused by `--check` (exit 78): the values
//! that once passed `--check` and then failed, and a seeded random search
//! over every numeric and duration setting that runs `--check`, then a
//! `--once` run for each config `--check` accepted, against a wiremock Metal
//! API and Direktiv (see `pipeline_support`). No run may panic.

mod pipeline_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline_support::*;

/// A `--once` run that takes longer than this is stopped (a slow run is
/// not a panic; the random values make some runs wait out timeouts).
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// The exit code and stderr of the binary on `config` with `args`, or `None`
/// when it was stopped after [`RUN_LIMIT`].
fn run(world: &World, config: &str, args: &[&str]) -> Option<(i32, String)> {
    let path = world.write_config(config);
    let stderr_path = world.dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).expect("a log file");
    let mut child = Command::new(BIN)
        .args(args)
        .arg(&path)
        .env_remove("METAL_AUTH_TOKEN")
        .env_remove("DIREKTIV_TOKEN")
        .env_remove("STATE_DIRECTORY")
        .env_remove("EQUINIX_RECEIVER_ALLOW_FAST_POLL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        !log.contains("panicked"),
        "the binary panicked on {args:?}:\n{config}\n{log}"
    );
    let status = status?;
    let code = status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal ({status}) on {args:?}:\n{config}\n{log}"));
    assert_ne!(code, 101, "a panic exit on {args:?}:\n{config}\n{log}");
    Some((code, log))
}

/// The standard config with `line` put in its place: a section key
/// (`equinix.perPage`) replaces the harness's own value when it has one.
fn config_with(world: &World, settings: &[(&str, String)]) -> String {
    let mut text = world.config(&["startFrom: all"], &[]);
    for (key, value) in settings {
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        let line = format!("{name}: {value}");
        let replaced = match *key {
            "equinix.organizationId" => Some(format!("organizationId: {ORG}")),
            "equinix.perPage" => Some("perPage: 10".to_owned()),
            "direktiv.maxRetries" => Some("maxRetries: 2".to_owned()),
            _ => None,
        };
        text = match (replaced, section) {
            (Some(old), _) => text.replacen(&old, &line, 1),
            (None, "") => format!("{text}{line}\n"),
            (None, section) => text.replacen(
                &format!("{section}:\n"),
                &format!("{section}:\n  {line}\n"),
                1,
            ),
        };
    }
    text
}

#[tokio::test]
async fn values_that_used_to_pass_check_and_then_fail_are_refused_with_78() {
    let world = World::start().await;
    for (key, value) in [
        ("equinix.organizationId", "'..'"),
        ("equinix.organizationId", "a/b"),
        ("equinix.requestRate", "1e-300"),
        ("equinix.pollInterval", "1ms"),
        ("direktiv.poisonAfter", "1ms"),
    ] {
        let config = config_with(&world, &[(key, value.to_owned())]);
        for args in [&["--check"][..], &["--once"][..]] {
            let (code, log) = run(&world, &config, args).expect("a prompt answer");
            assert_eq!(code, 78, "{key}: {value} with {args:?}:\n{log}");
            assert!(log.contains(&format!("{key} (line ")), "{log}");
        }
    }
    assert!(
        world.metal.hits().is_empty(),
        "a refused config made a request"
    );
}

/// A small seeded generator (SplitMix64): the same seed, the same configs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Duration,
    Integer,
    Rate,
    Size,
    OrgId,
}

/// Every numeric, size, duration and id setting.
const KEYS: &[(&str, Kind)] = &[
    ("equinix.organizationId", Kind::OrgId),
    ("equinix.pollInterval", Kind::Duration),
    ("equinix.maxPollInterval", Kind::Duration),
    ("equinix.coveredPollInterval", Kind::Duration),
    ("equinix.requestRate", Kind::Rate),
    ("equinix.perPage", Kind::Integer),
    ("equinix.maxPages", Kind::Integer),
    ("equinix.concurrency", Kind::Integer),
    ("equinix.inventoryRefresh", Kind::Duration),
    ("equinix.timeout", Kind::Duration),
    ("equinix.sweepTimeout", Kind::Duration),
    ("equinix.maxResponseSize", Kind::Size),
    ("direktiv.timeout", Kind::Duration),
    ("direktiv.concurrency", Kind::Integer),
    ("direktiv.maxRetries", Kind::Integer),
    ("direktiv.errorEventInterval", Kind::Duration),
    ("direktiv.poisonAfter", Kind::Duration),
    ("state.overlap", Kind::Duration),
    ("state.deadLetterMax", Kind::Integer),
    ("shutdownGrace", Kind::Duration),
];

fn value(rng: &mut Rng, kind: Kind) -> String {
    match kind {
        Kind::Duration => match rng.below(3) {
            0 => rng
                .pick(&[
                    "0s",
                    "1ms",
                    "10ms",
                    "999ms",
                    "1s",
                    "9s",
                    "10s",
                    "1m",
                    "15m",
                    "3h",
                    "24h",
                    "25h",
                    "-1s",
                    "1.5s",
                    "10",
                    "7d",
                    "\"\"",
                    "never",
                    "9999999999999999999h",
                    "2s500ms",
                    "[1s]",
                ])
                .to_owned(),
            _ => {
                let n = rng.next() % 10u64.pow(rng.below(6) as u32 + 1);
                format!("{n}{}", rng.pick(&["ms", "s", "m", "h"]))
            }
        },
        Kind::Integer => match rng.below(2) {
            0 => rng
                .pick(&[
                    "-1",
                    "0",
                    "1",
                    "2",
                    "100",
                    "256",
                    "257",
                    "1000",
                    "1001",
                    "100000",
                    "2147483648",
                    "9223372036854775808",
                    "1e300",
                    "1.5",
                    "\"5\"",
                    "x",
                ])
                .to_owned(),
            _ => (rng.next() % 2000).to_string(),
        },
        // Between 0.1 and 1 request a second, a run takes minutes: valid
        // and slow, so left out here (the loader's tests cover the range).
        Kind::Rate => rng
            .pick(&[
                "1e-300", "0", "-1", "0.05", "0.0999", "1001", "1e300", "2", "50", "1000", ".nan",
                ".inf", "fast", "\"5\"",
            ])
            .to_owned(),
        Kind::Size => rng
            .pick(&[
                "0",
                "1",
                "1024",
                "64KiB",
                "32MiB",
                "1GB",
                "1TB",
                "-5",
                "1.5MiB",
                "lots",
                "18446744073709551616",
            ])
            .to_owned(),
        Kind::OrgId => rng
            .pick(&[
                "'..'",
                "'.'",
                "a/b",
                "x",
                "\"\"",
                "ED49FA53-743F-43AA-836B-E24F88F94D9C",
                "ed49fa53-743f-43aa-836b-e24f88f94d9c",
                "ed49fa53743f43aa836be24f88f94d9c",
                "'ed49fa53-743f-43aa-836b-e24f88f94d9c/..'",
            ])
            .to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_values_never_panic_in_check_or_a_once_run() {
    let world = World::start().await;
    world.metal.add(
        &device_events_path(D1),
        [
            device_event(&eid(1), "provisioning.109", D1, ago(40)),
            device_event(&eid(2), "provisioning.110", D1, ago(30)),
        ],
    );
    let seed = std::env::var("VALUES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026);
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..40 {
        let settings: Vec<(&str, String)> = (0..1 + rng.below(3))
            .map(|_| {
                let (key, kind) = KEYS[rng.below(KEYS.len())];
                (key, value(&mut rng, kind))
            })
            .collect();
        let config = config_with(&world, &settings);
        let world_ref = &world;
        let config_ref = config.clone();
        let (code, log) = tokio::task::block_in_place(|| run(world_ref, &config_ref, &["--check"]))
            .expect("--check answers at once");
        match code {
            0 => {
                accepted += 1;
                let once = tokio::task::block_in_place(|| run(world_ref, &config, &["--once"]));
                if let Some((code, log)) = once {
                    assert!(
                        [0, 1, 3].contains(&code),
                        "case {case} (seed {seed}): --once exited {code}:\n{config}\n{log}"
                    );
                }
            }
            78 => refused += 1,
            other => panic!("case {case} (seed {seed}): --check exited {other}:\n{config}\n{log}"),
        }
        // Each run starts from a fresh state.
        let _ = std::fs::remove_file(world.state_path());
    }
    // The search reached both sides of the ranges.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}
