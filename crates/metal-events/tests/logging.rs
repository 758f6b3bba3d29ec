//! The log lines of a request name it but never show the token. In its own
//! test binary: a `tracing` subscriber is process-wide state.

use std::sync::{Arc, Mutex};

use metal_events::{Client, OrganizationId, SecretString};
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "tok-5f1c9e2a7b-NEVER-SHOWN";
const ORG: &str = "ed49fa53-743f-43aa-836b-e24f88f94d9c";

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../fixtures/metal/pages/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[tokio::test]
async fn log_lines_name_the_request_but_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(599))
        .with_priority(u8::MAX)
        .named("catch-all: an unexpected request")
        .expect(0)
        .mount(&server)
        .await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture("organization.json"), "application/json"),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/metal/v1/organizations/{ORG}")))
        .respond_with(
            ResponseTemplate::new(401).set_body_raw(fixture("error-401.json"), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = Client::builder(SecretString::from(TOKEN))
        .base_url(format!("{}/metal/v1", server.uri()))
        .build()
        .unwrap();

    client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap();
    client
        .organization(&OrganizationId::new(ORG))
        .await
        .unwrap_err();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("metal answered"), "{log}");
    assert!(
        log.contains(&format!("/metal/v1/organizations/{ORG}")),
        "{log}"
    );
    assert!(log.contains("status=401"), "{log}");
    assert!(log.contains("endpoint=\"organization\""), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}
