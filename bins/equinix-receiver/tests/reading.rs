//! Reading that reaches every event, black box: the receiver binary against
//! the Metal and Direktiv simulators, in the cases that lost events before
//! (issue #22): a first run over a list longer than the page cap, a backlog
//! deeper than the total page cap, an event listed late on a busy list, a
//! new event at position 11 behind known ones, and an API whose clock is not
//! this host's.

mod process_support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use metal_sim::{
    DirektivSim, DirektivSimConfig, DirektivSimHandle, MetalSim, MetalSimConfig, MetalSimHandle,
};
use process_support::{collect_stderr, receiver_env, send_signal};

/// The most any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(90);
const TICK: Duration = Duration::from_millis(50);

/// One project with one device whose history holds `history` events, the
/// API's clock `offset` from this host's.
async fn metal(history: usize, offset: TimeDelta) -> MetalSimHandle {
    MetalSim::start(MetalSimConfig {
        projects: 1,
        devices_per_project: 1,
        history_per_device: history,
        history_per_project: 0,
        history_per_org: 0,
        history_span: Duration::from_secs(6 * 3600),
        clock_offset: offset,
        ..MetalSimConfig::default()
    })
    .await
    .expect("start the Metal simulator")
}

async fn direktiv() -> DirektivSimHandle {
    DirektivSim::start(DirektivSimConfig::default())
        .await
        .expect("start the Direktiv simulator")
}

fn device(metal: &MetalSimHandle) -> String {
    metal.projects()[0].devices[0].id.clone()
}

/// The ids of the events the device's list holds now.
fn device_history(metal: &MetalSimHandle) -> Vec<String> {
    let device = device(metal);
    metal
        .events()
        .into_iter()
        .filter(|e| e.device_id.as_deref() == Some(device.as_str()))
        .map(|e| e.id)
        .collect()
}

/// A config reading device lists only, every 200 ms; `extra` are more
/// `equinix` lines.
fn config(
    metal: &MetalSimHandle,
    direktiv: &DirektivSimHandle,
    state: &Path,
    extra: &str,
) -> String {
    let extra: String = extra.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "equinix:\n  organizationId: {org}\n  packetAuthToken: {token}\n  apiUrl: {api}\n  \
         levels: [device]\n  pollInterval: 200ms\n  maxPollInterval: 200ms\n{extra}\
         direktiv:\n  endpoint: {endpoint}\n  token: {dtoken}\n\
         state:\n  path: {state}\n\
         log:\n  format: json\n  level: info\n\
         server:\n  listen: 127.0.0.1:0\n",
        org = metal.org_id(),
        token = metal.token(),
        api = metal.base_url(),
        endpoint = direktiv.endpoint_url(),
        dtoken = direktiv.token().expect("the simulator has a token"),
        state = state.display(),
    )
}

/// A running receiver; killed when dropped.
struct Receiver {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn spawn(dir: &Path, config: &str) -> Self {
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).expect("write the config");
        let mut child =
            receiver_env(Command::new(env!("CARGO_BIN_EXE_equinix-receiver")).arg(&path))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the receiver");
        let logs = collect_stderr(&mut child);
        Self { child, logs }
    }

    /// Sweeps logged so far.
    fn sweeps(&self) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("sweep done"))
            .count()
    }

    /// Waits for `n` sweeps.
    async fn wait_sweeps(&self, n: usize) {
        let start = tokio::time::Instant::now();
        while self.sweeps() < n {
            assert!(
                start.elapsed() < DEADLINE,
                "no sweep: {:?}",
                self.logs.lock().unwrap()
            );
            tokio::time::sleep(TICK).await;
        }
    }

    /// Stops it with SIGTERM and waits for it to end.
    async fn stop(mut self) {
        send_signal(self.child.id(), "TERM");
        let start = tokio::time::Instant::now();
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(start.elapsed() < DEADLINE, "the receiver did not stop");
            tokio::time::sleep(TICK).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until Direktiv has every id of `expected`; then checks each came
/// once.
async fn wait_delivered(direktiv: &DirektivSimHandle, expected: &[String]) {
    let start = tokio::time::Instant::now();
    loop {
        let accepted: HashSet<String> = direktiv.accepted_ids().into_iter().collect();
        let missing = expected.iter().filter(|id| !accepted.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{missing} of {} events never delivered",
            expected.len()
        );
        tokio::time::sleep(TICK).await;
    }
    let accepted = direktiv.accepted_ids();
    for id in expected {
        let times = accepted.iter().filter(|a| *a == id).count();
        assert_eq!(times, 1, "{id} delivered {times} times");
    }
}

#[tokio::test]
async fn a_first_run_from_all_delivers_a_list_longer_than_the_page_cap() {
    let dir = tempfile::tempdir().unwrap();
    // 1,502 events with the defaults (perPage 100, maxPages 10): one read
    // takes 1,000 at most.
    let metal = metal(1502, TimeDelta::zero()).await;
    let direktiv = direktiv().await;
    let expected: Vec<String> = device_history(&metal);
    assert_eq!(expected.len(), 1502);
    let receiver = Receiver::spawn(
        dir.path(),
        &config(
            &metal,
            &direktiv,
            &dir.path().join("state.json"),
            "startFrom: all",
        ),
    );
    wait_delivered(&direktiv, &expected).await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_backlog_deeper_than_the_total_page_cap_is_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let metal = metal(2, TimeDelta::zero()).await;
    let direktiv = direktiv().await;
    let state = dir.path().join("state.json");
    let config = config(
        &metal,
        &direktiv,
        &state,
        "startFrom: all\nperPage: 10\nmaxPages: 10",
    );
    let receiver = Receiver::spawn(dir.path(), &config);
    let history: Vec<String> = device_history(&metal);
    wait_delivered(&direktiv, &history).await;
    receiver.stop().await;
    // Down: 1,500 events on the device, deeper than the 100 pages (ten
    // times maxPages) one read may take.
    let device = device(&metal);
    let backlog: Vec<String> = (0..1500)
        .map(|_| metal.emit_device_event(&device).expect("the device").id)
        .collect();
    let receiver = Receiver::spawn(dir.path(), &config);
    wait_delivered(&direktiv, &backlog).await;
    receiver.stop().await;
}

#[tokio::test]
async fn an_event_listed_late_on_a_busy_list_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let metal = metal(2, TimeDelta::zero()).await;
    let direktiv = direktiv().await;
    let receiver = Receiver::spawn(
        dir.path(),
        &config(
            &metal,
            &direktiv,
            &dir.path().join("state.json"),
            "startFrom: all\nperPage: 10",
        ),
    );
    let device = device(&metal);
    // A busy list: 40 new events of the last 100 seconds, read and delivered.
    let now = metal.now();
    let busy: Vec<String> = (0..40)
        .map(|i| {
            let at = now - TimeDelta::seconds(100 - 2 * i);
            metal
                .emit_device_event_at(&device, at)
                .expect("the device")
                .id
        })
        .collect();
    wait_delivered(&direktiv, &busy).await;
    // An event created two minutes ago that the API lists only now, where
    // its time puts it: four pages down.
    let late = metal
        .emit_device_event_at(&device, metal.now() - TimeDelta::minutes(2))
        .expect("the device");
    wait_delivered(&direktiv, &[late.id]).await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_new_event_at_position_eleven_behind_known_ones_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let metal = metal(12, TimeDelta::zero()).await;
    let direktiv = direktiv().await;
    let receiver = Receiver::spawn(
        dir.path(),
        &config(
            &metal,
            &direktiv,
            &dir.path().join("state.json"),
            "startFrom: all",
        ),
    );
    let history: Vec<String> = device_history(&metal);
    wait_delivered(&direktiv, &history).await;
    let new = metal
        .emit_device_event(&device(&metal))
        .expect("the device");
    assert!(metal.list_device_event_at(&new.id, 11));
    wait_delivered(&direktiv, &[new.id]).await;
    receiver.stop().await;
}

#[tokio::test]
async fn start_from_now_follows_the_apis_clock_whatever_this_hosts_says() {
    // The API's clock minus this host's: the host runs 3 min or an hour
    // fast, or an hour slow.
    for offset in [
        TimeDelta::minutes(-3),
        TimeDelta::hours(-1),
        TimeDelta::hours(1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let metal = metal(2, offset).await;
        let direktiv = direktiv().await;
        let receiver = Receiver::spawn(
            dir.path(),
            &config(
                &metal,
                &direktiv,
                &dir.path().join("state.json"),
                "startFrom: now",
            ),
        );
        receiver.wait_sweeps(2).await;
        let history: HashSet<String> = device_history(&metal).into_iter().collect();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let device = device(&metal);
        let new: Vec<String> = (0..10)
            .map(|_| metal.emit_device_event(&device).expect("the device").id)
            .collect();
        wait_delivered(&direktiv, &new).await;
        assert!(
            direktiv
                .accepted_ids()
                .iter()
                .all(|id| !history.contains(id)),
            "offset {offset}: an event from before the start was sent"
        );
        receiver.stop().await;
    }
}
