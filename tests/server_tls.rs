//! The handle service over TLS, with certificates made here (rcgen): a client that trusts the
//! test CA lists handles over HTTPS; after the certificate and key files are replaced (as a
//! Kubernetes Secret rotation does), a new connection gets the new certificate; files that do
//! not make a pair leave the last good certificate in use.

mod common_http;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common_http::{ACCOUNT, signed, status};
use share_hygiene::auth::AccountKey;
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::listener::TlsFiles;
use share_hygiene::protocol::AccessRights;
use share_hygiene::server::{HandleServer, ServerConfig};

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca: CertificateDer<'static>,
    cert_pem: String,
    cert: CertificateDer<'static>,
    key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self {
            ca: ca.der().clone(),
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the pair the way a Secret rotation does: new files renamed over the old.
    fn install(&self, files: &TlsFiles) {
        replace(&files.cert, &self.cert_pem);
        replace(&files.key, &self.key_pem);
    }
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A fresh directory for this test's files.
fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "server_tls-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends a signed List Handles over TLS, trusting only `ca`; the answer and the certificate
/// the server presented, or the handshake's error.
async fn list_over_tls(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    key: &AccountKey,
) -> Result<(String, CertificateDer<'static>), std::io::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let request = signed(
        key,
        "GET",
        "/acct/share?comp=listhandles",
        &[("x-ms-recursive", "true")],
        b"",
    );
    tls.write_all(&request).await?;
    let mut buf = Vec::new();
    // The server may end TLS without close_notify once it has answered `Connection: close`.
    let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut buf)).await;
    Ok((String::from_utf8_lossy(&buf).into_owned(), presented))
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_handles_over_tls_and_follows_a_replaced_certificate() {
    let dir = work_dir("rotate");
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let first = Pki::new("first");
    first.install(&files);

    let store = Arc::new(MemoryStore::default());
    store.create_share("share").unwrap();
    store
        .open("share", "report.txt", &open_spec())
        .expect("open a handle");
    let key = AccountKey::random();
    let mut config = ServerConfig::new(ACCOUNT, key.clone());
    config.tls = Some(files.clone());
    let server = Arc::new(HandleServer::memory(config, store));
    let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = running.addr;

    let (answer, presented) = list_over_tls(addr, &first.ca, &key).await.unwrap();
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.contains("<Path>report.txt</Path>"), "{answer}");
    assert_eq!(presented, first.cert);

    // Rotation: the next connection gets the new certificate, and the old CA no longer
    // vouches for the server.
    let second = Pki::new("second");
    second.install(&files);
    let (answer, presented) = list_over_tls(addr, &second.ca, &key).await.unwrap();
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(presented, second.cert);
    assert!(list_over_tls(addr, &first.ca, &key).await.is_err());

    // A half-done rotation (a key that is not a key) keeps the last good pair in use.
    replace(&files.key, "not a key\n");
    let (answer, presented) = list_over_tls(addr, &second.ca, &key).await.unwrap();
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(presented, second.cert);

    running.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_cannot_serve_stops_the_start() {
    let dir = work_dir("bad");
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let one = Pki::new("one");
    let other = Pki::new("other");
    replace(&files.cert, &one.cert_pem);
    replace(&files.key, &other.key_pem);
    let mut config = ServerConfig::new(ACCOUNT, AccountKey::random());
    config.tls = Some(files);
    let server = Arc::new(HandleServer::memory(
        config,
        Arc::new(MemoryStore::default()),
    ));
    let err = server
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("a key that does not match its certificate is refused");
    let text = err.to_string();
    assert!(
        text.contains("tls.crt") && text.contains("tls.key"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

fn open_spec() -> OpenSpec {
    OpenSpec {
        client_ip: "10.7.0.1:445".into(),
        client_name: None,
        session_id: None,
        open_time: jiff::Timestamp::now(),
        last_reconnect_time: None,
        access_rights: AccessRights::READ,
        directory: false,
        count: 1,
        fail_close: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_completes_the_handshake_is_dropped() {
    let dir = work_dir("stall");
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    Pki::new("stall").install(&files);
    let mut config = ServerConfig::new(ACCOUNT, AccountKey::random());
    config.tls = Some(files);
    config.limits.request_read_timeout = Duration::from_secs(1);
    let server = Arc::new(HandleServer::memory(
        config,
        Arc::new(MemoryStore::default()),
    ));
    let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Half a ClientHello record header, then nothing.
    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut buf)).await;
    assert!(ended.is_ok(), "the stalled handshake was not dropped");
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
