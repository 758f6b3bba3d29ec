//! Sending over HTTPS to a local server whose certificate is made in the test.
//!
//! The server is a few lines of tokio-rustls and hand-written HTTP/1.1: it
//! answers every request with 200 and counts the requests it fully read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use direktiv_broadcast::{Outcome, RetryReason, Sink, SinkConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use url::Url;

/// A test CA, as PEM, and a server certificate for 127.0.0.1 it signed.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let ca = ca("direktiv-broadcast test CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "direktiv.test");
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_chain: vec![cert.der().clone()],
        server_key: key.serialize_der(),
    }
}

/// Starts the HTTPS server on 127.0.0.1 and returns its address and request counter.
async fn serve(pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.server_chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // A refused handshake ends here; the client reports it.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_request(&mut tls).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, served)
}

/// Reads one HTTP/1.1 request with a `content-length` body.
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

fn config(addr: SocketAddr) -> SinkConfig {
    SinkConfig::new(Url::parse(&format!("https://{addr}/api/namespaces/ops/broadcast")).unwrap())
}

fn event() -> Event {
    EventBuilderV10::new()
        .id("0b3c5b0e-0d2f-4b7b-9a55-0e1f3c7d9a10")
        .ty("provisioning.110")
        .source("direktiv/listener/equinix/Direktiv")
        .build()
        .unwrap()
}

fn ca_file(pem: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pem).unwrap();
    file
}

fn assert_tls_refused(outcome: &Outcome) {
    assert!(
        matches!(
            outcome,
            Outcome::Retryable {
                reason: RetryReason::Tls,
                status: None,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_without_the_ca() {
    let pki = pki();
    let (addr, served) = serve(&pki).await;
    // Without system CA certificates (a bare container) the client cannot
    // even be built; with them, the handshake fails. Either way nothing is sent.
    match Sink::new(config(addr)) {
        Err(err) => assert!(
            matches!(err, direktiv_broadcast::Error::Client(_)),
            "{err:?}"
        ),
        Ok(sink) => assert_tls_refused(&sink.send(&event()).await.outcome),
    }
    assert_eq!(served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_ca_file_that_did_not_sign_the_server_is_refused() {
    let pki = pki();
    let (addr, served) = serve(&pki).await;
    let other = ca_file(&ca("some other CA").pem());
    let mut config = config(addr);
    config.ca_file = Some(other.path().to_owned());
    let delivery = Sink::new(config).unwrap().send(&event()).await;
    assert_tls_refused(&delivery.outcome);
    assert!(
        delivery.outcome.to_string().contains("certificate"),
        "the reason names the certificate: {}",
        delivery.outcome
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_signing_ca_file_is_trusted() {
    let pki = pki();
    let (addr, served) = serve(&pki).await;
    let file = ca_file(&pki.ca_pem);
    let mut config = config(addr);
    config.ca_file = Some(file.path().to_owned());
    let delivery = Sink::new(config).unwrap().send(&event()).await;
    assert_eq!(delivery.outcome, Outcome::Delivered);
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn skip_verify_accepts_any_certificate() {
    let pki = pki();
    let (addr, served) = serve(&pki).await;
    let mut config = config(addr);
    config.insecure_skip_verify = true;
    let delivery = Sink::new(config).unwrap().send(&event()).await;
    assert_eq!(delivery.outcome, Outcome::Delivered);
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
