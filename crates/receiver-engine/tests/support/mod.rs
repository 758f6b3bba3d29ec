//! The harness of the engine's in-process tests: a wiremock Metal API that
//! serves paged, newest-first event lists from a store the test can change
//! between runs, a wiremock Direktiv whose answers the test scripts, a state
//! file in a temporary directory, and a [`Receiver`] built as the binary
//! builds it, watched through an [`Observer`].

#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use direktiv_broadcast::{Auth, Sink, SinkConfig};
use event_dedupe::{Baseline, FileOptions, FileTracker};
use metal_cloudevents::MapOptions;
use metal_events::Client;
use receiver_engine::{EngineOptions, Observer, Receiver, SweepReport, Target};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

mod servers;
pub(crate) use servers::*;

/// Both mock servers, the state directory, and the config.
pub(crate) struct World {
    pub(crate) metal_server: MockServer,
    pub(crate) direktiv_server: MockServer,
    pub(crate) metal: Metal,
    pub(crate) direktiv: Direktiv,
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    /// Starts both servers: every known Metal route is served from the
    /// store, `/projects` and any other route must never be requested, and
    /// Direktiv accepts everything until told otherwise.
    pub(crate) async fn start() -> Self {
        let Servers {
            metal_server,
            direktiv_server,
            metal,
            direktiv,
        } = Servers::start().await;

        Self {
            metal_server,
            direktiv_server,
            metal,
            direktiv,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub(crate) fn api_url(&self) -> String {
        format!("{}/metal/v1", self.metal_server.uri())
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("{}{BROADCAST}", self.direktiv_server.uri())
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// A receiver as the binary builds it from [`Setup`]: the state in a
    /// [`FileTracker`] at [`World::state_path`] (reopened for each receiver,
    /// as a restart does), the Direktiv token sent in both headers.
    pub(crate) async fn receiver(&self, setup: &Setup) -> (Receiver, Arc<Recorder>) {
        let mut client = Client::builder(SecretString::from(METAL_TOKEN.to_owned())).base_url(
            setup
                .api_url
                .clone()
                .unwrap_or_else(|| self.api_url())
                .as_str(),
        );
        if let Some(timeout) = setup.request_timeout {
            client = client.timeout(timeout);
        }
        if let Some(bytes) = setup.max_response_size {
            client = client.max_response_size(bytes);
        }
        let mut options = FileOptions::default();
        options.tracker.baseline = setup.baseline;
        let tracker = FileTracker::open(&self.state_path(), options)
            .await
            .expect("the state opens");
        let sink = SinkConfig::new(self.endpoint().parse().expect("a URL"))
            .with_auth(Auth::new(DIREKTIV_TOKEN));
        let recorder = Arc::new(Recorder::default());
        let receiver = Receiver::new(
            client.build().expect("a client"),
            Arc::new(tracker),
            Target::Direktiv(Sink::new(sink).expect("a sink")),
            MapOptions::default(),
            setup.options.clone(),
        )
        .with_observer(Arc::clone(&recorder) as Arc<dyn Observer>);
        (receiver, recorder)
    }

    /// One sweep with `setup`, as `--once` runs it; the state is saved and
    /// released when it returns.
    pub(crate) async fn try_once(&self, setup: &Setup) -> Result<Swept, metal_events::Error> {
        let (receiver, recorder) = self.receiver(setup).await;
        let report = receiver
            .run_once(&CancellationToken::new())
            .await?
            .expect("nothing stops the sweep");
        Ok(Swept { report, recorder })
    }

    /// [`World::try_once`] for a run whose inventory loads.
    pub(crate) async fn once(&self, setup: &Setup) -> Swept {
        self.try_once(setup).await.expect("the inventory loads")
    }

    /// Checks every `.expect(n)` of both servers.
    pub(crate) async fn verify(&self) {
        self.metal_server.verify().await;
        self.direktiv_server.verify().await;
    }
}

/// The accepted event with this id; panics when there is none.
pub(crate) fn by_id<'a>(events: &'a [Value], id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no event {id} among {events:#?}"))
}

/// A front for the Metal mock at `upstream`: a request for `endless_path`
/// gets a 200 whose chunked body never ends (until the client hangs up);
/// every other request is passed on and its answer relayed. Returns the
/// front's base URL (`http://127.0.0.1:<port>`).
pub(crate) async fn endless_front(upstream: String, endless_path: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("an address");
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (upstream, endless_path, http) =
                (upstream.clone(), endless_path.clone(), http.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
                if target.split('?').next() == Some(endless_path.as_str()) {
                    let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 transfer-encoding: chunked\r\n\r\n";
                    let mut frame = format!("{:x}\r\n", 16 * 1024).into_bytes();
                    frame.extend(std::iter::repeat_n(b' ', 16 * 1024));
                    frame.extend_from_slice(b"\r\n");
                    if socket.write_all(start.as_bytes()).await.is_ok() {
                        while socket.write_all(&frame).await.is_ok() {}
                    }
                    return;
                }
                let token = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("x-auth-token")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                let Ok(answer) = http
                    .get(format!("{upstream}{target}"))
                    .header("x-auth-token", token)
                    .send()
                    .await
                else {
                    return;
                };
                let status = answer.status().as_u16();
                let body = answer.bytes().await.unwrap_or_default();
                let start = format!(
                    "HTTP/1.1 {status} Relayed\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(start.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{address}")
}

/// What a receiver is built with: the typed form of the config lines the
/// binary's tests wrote. The default is the binary's defaults with
/// `perPage: 10` and `direktiv.maxRetries: 2`.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) baseline: Baseline,
    pub(crate) options: EngineOptions,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) max_response_size: Option<u64>,
    /// Another base URL for the Metal API (a front for the mock).
    pub(crate) api_url: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            baseline: Baseline::Now,
            options: EngineOptions::default()
                .with_organization_id(ORG.to_owned())
                .with_per_page(10)
                .with_max_retries(2),
            request_timeout: None,
            max_response_size: None,
            api_url: None,
        }
    }
}

impl Setup {
    /// `startFrom: all`: every event the API lists is new.
    pub(crate) fn all() -> Self {
        Self {
            baseline: Baseline::All,
            ..Self::default()
        }
    }

    /// The same setup with its engine options changed by `change`.
    pub(crate) fn with(mut self, change: impl FnOnce(EngineOptions) -> EngineOptions) -> Self {
        self.options = change(self.options);
        self
    }
}

/// What one sweep did: its report and what the observer heard.
#[derive(Debug)]
pub(crate) struct Swept {
    pub(crate) report: SweepReport,
    pub(crate) recorder: Arc<Recorder>,
}

impl Swept {
    /// Everything was delivered (the binary's `--once` exits 0), showing the
    /// report when not.
    pub(crate) fn assert_all_delivered(&self) -> &Self {
        assert!(self.report.all_delivered(), "{:#?}", self.report);
        self
    }

    /// Something was not delivered (the binary's `--once` exits 3).
    pub(crate) fn assert_not_all_delivered(&self) -> &Self {
        assert!(!self.report.all_delivered(), "{:#?}", self.report);
        self
    }
}

/// Records what the engine tells its [`Observer`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    events: Mutex<Heard>,
}

/// What a [`Recorder`] heard.
#[derive(Debug, Default, Clone)]
pub(crate) struct Heard {
    /// Ids Direktiv acknowledged, with whether it already had them.
    pub(crate) delivered: Vec<(String, bool)>,
    /// Ids refused for good, with the reason.
    pub(crate) refused: Vec<(String, String)>,
    /// Ids deferred, with the reason.
    pub(crate) deferred: Vec<(String, String)>,
    /// Lists that could not be read: their source key and the error.
    pub(crate) list_errors: Vec<(String, String)>,
}

impl Recorder {
    pub(crate) fn heard(&self) -> Heard {
        self.events.lock().expect("lock").clone()
    }
}

impl Observer for Recorder {
    fn event_delivered(&self, event: &cloudevents::Event, already: bool) {
        use cloudevents::AttributesReader as _;
        let id = event.id().to_owned();
        self.events
            .lock()
            .expect("lock")
            .delivered
            .push((id, already));
    }

    fn event_deferred(&self, event: &cloudevents::Event, reason: &str) {
        use cloudevents::AttributesReader as _;
        let entry = (event.id().to_owned(), reason.to_owned());
        self.events.lock().expect("lock").deferred.push(entry);
    }

    fn event_refused(&self, event: &cloudevents::Event, reason: &str) {
        use cloudevents::AttributesReader as _;
        let entry = (event.id().to_owned(), reason.to_owned());
        self.events.lock().expect("lock").refused.push(entry);
    }

    fn list_error(&self, source: &str, error: &metal_events::Error) {
        let entry = (source.to_owned(), error.to_string());
        self.events.lock().expect("lock").list_errors.push(entry);
    }
}

/// The log lines the engine writes while the guard is held, in the
/// default text format (the level, then the message and fields). The
/// engine's tasks run on the test's thread (`#[tokio::test]` is
/// single-threaded), so they all write here.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Starts capturing, until the guard is dropped.
    pub(crate) fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// Forgets what was written so far.
    pub(crate) fn clear(&self) {
        self.0.lock().expect("lock").clear();
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
