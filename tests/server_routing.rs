//! One canonical resource per request: a signed request, replayed over real HTTP with another
//! `Host`, path, method, handle id or query, never reaches a resource its signature (Shared Key
//! or SAS) does not cover, on a path-style or a host-style service.
//!
//! The setting is the account-name collision: account `demo` with shares `demo` and `projects`,
//! where `/demo/projects/x` is share `projects`, directory `x` path-style and share `demo`,
//! directory `projects/x` host-style.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

use share_hygiene::auth::{AccountKey, RequestView, parse_query, shared_key_string_to_sign, sign};
use share_hygiene::handles::HandleService;
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::protocol::{AccessRights, HandleId, ListRequest, Target};
use share_hygiene::server::{Addressing, HandleServer, RunningServer, ServerConfig};

const ACCOUNT: &str = "demo";
const HOST_NAME: &str = "demo.file.core.windows.net";
const CLOSE_ALL: &str = "comp=forceclosehandles";

/// Shares `demo` (handles under `projects/x`) and `projects` (handles under `x`).
fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::default());
    for (share, file) in [("demo", "projects/x/a.txt"), ("projects", "x/a.txt")] {
        store.create_share(share).unwrap();
        let spec = OpenSpec {
            client_ip: "10.0.0.9:445".into(),
            client_name: None,
            session_id: None,
            open_time: jiff::Timestamp::now(),
            last_reconnect_time: None,
            access_rights: AccessRights::READ,
            directory: false,
            count: 2,
            fail_close: false,
        };
        store.open(share, file, &spec).unwrap();
    }
    store
}

async fn start(addressing: Addressing) -> (RunningServer, Arc<MemoryStore>, AccountKey) {
    let store = store();
    let key = AccountKey::random();
    let mut config = ServerConfig::new(ACCOUNT, key.clone());
    config.addressing = addressing;
    let server = Arc::new(HandleServer::memory(config, store.clone()));
    let running = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (running, store, key)
}

/// The open handles of each share, straight from the store.
async fn snapshot(store: &MemoryStore) -> Vec<(String, Vec<HandleId>)> {
    let mut out = Vec::new();
    for share in ["demo", "projects"] {
        let req = ListRequest {
            target: Target {
                share: share.into(),
                path: String::new(),
                recursive: Some(true),
            },
            marker: None,
            max_results: None,
        };
        let page = store.list_handles(&req).await.unwrap();
        out.push((
            share.into(),
            page.handles.iter().map(|h| h.handle_id).collect(),
        ));
    }
    out
}

/// A request as it goes on the wire; `authorization` stays what was signed when the rest is
/// changed for a replay.
#[derive(Clone)]
struct Wire {
    method: String,
    /// The request target: `/path?query` or absolute-form.
    target: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
}

impl Wire {
    fn new(method: &str, target: &str, host: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![
            (
                "x-ms-date".to_owned(),
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            ),
            ("x-ms-version".to_owned(), "2025-11-05".to_owned()),
        ];
        all.extend(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        if method == "PUT" {
            all.push(("content-length".into(), "0".into()));
        }
        Self {
            method: method.into(),
            target: target.into(),
            host: Some(host.into()),
            headers: all,
        }
    }

    /// Signs the request with Shared Key, as the project's client does.
    fn signed(self, key: &AccountKey) -> Self {
        let path = self.target.split('?').next().unwrap_or_default().to_owned();
        self.signed_over(key, &path)
    }

    /// Signs the request with `resource_path` after `/{account}` in the canonicalized resource.
    fn signed_over(mut self, key: &AccountKey, resource_path: &str) -> Self {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let decoded = parse_query(query).unwrap();
        let view = RequestView {
            method: &self.method,
            raw_path: path,
            query: &decoded,
            headers: &headers,
        };
        let sts = shared_key_string_to_sign(&view, ACCOUNT, resource_path);
        let auth = format!("SharedKey {ACCOUNT}:{}", sign(key, &sts));
        self.headers.push(("authorization".into(), auth));
        self
    }

    fn with_target(mut self, target: &str) -> Self {
        self.target = target.into();
        self
    }

    fn with_host(mut self, host: Option<&str>) -> Self {
        self.host = host.map(str::to_owned);
        self
    }

    fn with_method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    /// Sets (or with `None`, removes) a header.
    fn with_header(mut self, name: &str, value: Option<&str>) -> Self {
        self.headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.headers.push((name.into(), v.into()));
        }
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if let Some(h) = &self.host {
            out.push_str(&format!("Host: {h}\r\n"));
        }
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// Sends the request; the status and the whole answer.
async fn send(addr: SocketAddr, wire: &Wire) -> (u16, String) {
    let bytes = wire.bytes();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    })
    .await
    .unwrap()
}

/// Sends each replay and checks it is refused with the status and code given and that the
/// store did not change.
async fn assert_refused(
    addr: SocketAddr,
    store: &MemoryStore,
    replays: Vec<(&str, Wire, u16, &str)>,
) {
    let before = snapshot(store).await;
    for (what, wire, status, code) in replays {
        let (got, answer) = send(addr, &wire).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            answer.contains(&format!("x-ms-error-code: {code}")),
            "{what}: {answer}"
        );
        assert_eq!(snapshot(store).await, before, "{what} changed the store");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_key_replays_never_cross_a_share_on_a_path_style_service() {
    let (running, store, key) = start(Addressing::PathStyle).await;
    let addr = running.addr;
    let local = addr.to_string();
    let before = snapshot(&store).await;
    let one_id = before[1].1[0].0.to_string();
    let close_x = Wire::new(
        "PUT",
        &format!("/demo/projects/x?{CLOSE_ALL}"),
        &local,
        &[("x-ms-handle-id", "*"), ("x-ms-recursive", "true")],
    )
    .signed(&key);
    let target = |t: &str| close_x.clone().with_target(t);
    let replays = vec![
        // Share `demo`, directory `projects/x`: the same string as the signed doubled form.
        (
            "the path of share demo",
            target(&format!("/demo/demo/projects/x?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "a trailing slash",
            target(&format!("/demo/projects/x/?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "an empty segment",
            target(&format!("/demo/projects//x?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "an encoded letter",
            target(&format!("/demo/%70rojects/x?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "another case",
            target(&format!("/demo/projects/X?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "a parent directory",
            target(&format!("/demo/projects?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "the host-style path on the account's host name",
            target(&format!("/projects/x?{CLOSE_ALL}")).with_host(Some(HOST_NAME)),
            400,
            "InvalidUri",
        ),
        (
            "another handle id",
            close_x.clone().with_header("x-ms-handle-id", Some(&one_id)),
            403,
            "AuthenticationFailed",
        ),
        (
            "without recursion",
            close_x.clone().with_header("x-ms-recursive", None),
            403,
            "AuthenticationFailed",
        ),
        (
            "recursion false",
            close_x.clone().with_header("x-ms-recursive", Some("false")),
            403,
            "AuthenticationFailed",
        ),
        (
            "another method",
            close_x.clone().with_method("POST"),
            405,
            "UnsupportedHttpVerb",
        ),
        (
            "a repeated comp",
            target(&format!("/demo/projects/x?{CLOSE_ALL}&{CLOSE_ALL}")),
            400,
            "InvalidQueryParameterValue",
        ),
        (
            "another account in the key name",
            close_x
                .clone()
                .with_header("authorization", Some("SharedKey projects:AAAA")),
            403,
            "AuthenticationFailed",
        ),
    ];
    assert_refused(addr, &store, replays).await;

    // The `Host` header is not signed and a path-style service ignores it: with the account's
    // host name (which a host-style service reads as share `demo`) the request still reaches
    // exactly what it was signed for, share `projects`.
    let (got, answer) = send(addr, &close_x.clone().with_host(Some(HOST_NAME))).await;
    assert_eq!(got, 200, "{answer}");
    assert!(
        answer.contains("x-ms-number-of-handles-closed: 2"),
        "{answer}"
    );
    let after = snapshot(&store).await;
    assert_eq!(after[0], before[0], "share demo is untouched");
    assert!(after[1].1.is_empty(), "share projects' handles are closed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_endpoint_takes_no_replayed_signature() {
    let (running, store, key) = start(Addressing::PathStyle).await;
    let local = running.addr.to_string();
    let create = Wire::new("PUT", "/demo/_admin/newshare", &local, &[]).signed(&key);
    let replays = vec![
        (
            "another share",
            create.clone().with_target("/demo/_admin/other"),
            403,
            "AuthenticationFailed",
        ),
        (
            "another method",
            create.clone().with_method("POST"),
            403,
            "AuthenticationFailed",
        ),
        (
            "signed in the single-account form",
            Wire::new("PUT", "/demo/_admin/newshare", &local, &[])
                .signed_over(&key, "/_admin/newshare"),
            403,
            "AuthenticationFailed",
        ),
    ];
    assert_refused(running.addr, &store, replays).await;
    assert_eq!(store.share_names(), ["demo", "projects"]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_style_service_serves_its_host_names_only() {
    let addressing = Addressing::host_style([HOST_NAME], ACCOUNT).unwrap();
    let (running, store, key) = start(addressing).await;
    let addr = running.addr;
    let local = addr.to_string();
    let before = snapshot(&store).await;
    let close_x = Wire::new(
        "PUT",
        &format!("/projects/x?{CLOSE_ALL}"),
        HOST_NAME,
        &[("x-ms-handle-id", "*"), ("x-ms-recursive", "true")],
    )
    .signed(&key);
    // What a path-style client signs for share `projects`, directory `x`: on this service its
    // path names share `demo`, directory `projects/x`.
    let path_style = Wire::new(
        "PUT",
        &format!("/demo/projects/x?{CLOSE_ALL}"),
        HOST_NAME,
        &[("x-ms-handle-id", "*"), ("x-ms-recursive", "true")],
    )
    .signed(&key);
    let replays = vec![
        (
            "the listen address as Host",
            close_x.clone().with_host(Some(&local)),
            400,
            "InvalidHeaderValue",
        ),
        (
            "another account's host name",
            close_x
                .clone()
                .with_host(Some("projects.file.core.windows.net")),
            400,
            "InvalidHeaderValue",
        ),
        (
            "a host name that only starts with ours",
            close_x
                .clone()
                .with_host(Some("demo.file.core.windows.net.example")),
            400,
            "InvalidHeaderValue",
        ),
        (
            "no Host",
            close_x.clone().with_host(None),
            400,
            "MissingRequiredHeader",
        ),
        (
            "an absolute target naming another host",
            close_x
                .clone()
                .with_target(&format!("http://{local}/projects/x?{CLOSE_ALL}")),
            400,
            "InvalidHeaderValue",
        ),
        (
            "a path-style signature",
            path_style.clone(),
            400,
            "InvalidUri",
        ),
        (
            "a path-style signature on the listen address",
            path_style.with_host(Some(&local)),
            400,
            "InvalidHeaderValue",
        ),
        (
            "the path of share demo",
            close_x
                .clone()
                .with_target(&format!("/demo/projects/x?{CLOSE_ALL}")),
            400,
            "InvalidUri",
        ),
        (
            "another path",
            close_x
                .clone()
                .with_target(&format!("/projects?{CLOSE_ALL}")),
            403,
            "AuthenticationFailed",
        ),
        (
            "another handle id",
            close_x.clone().with_header("x-ms-handle-id", Some("1")),
            403,
            "AuthenticationFailed",
        ),
    ];
    assert_refused(addr, &store, replays).await;

    // The host name in any case and with a port is the same host.
    let (got, answer) = send(
        addr,
        &close_x.with_host(Some("DEMO.file.core.windows.net:443")),
    )
    .await;
    assert_eq!(got, 200, "{answer}");
    let after = snapshot(&store).await;
    assert_eq!(after[0], before[0], "share demo is untouched");
    assert!(after[1].1.is_empty(), "share projects' handles are closed");
    running.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// SAS, signed as the protocol notes describe.
// ---------------------------------------------------------------------------------------------

const SAS_VERSION: &str = "2025-11-05";
const SAS_EXPIRY: &str = "2099-01-01T00:00:00Z";

fn hmac_b64(key: &AccountKey, sts: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&STANDARD.decode(key.to_base64()).unwrap()).unwrap();
    mac.update(sts.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A service SAS: `sr=s` for a share (`path` empty) or `sr=f` for a path in it.
fn service_sas(key: &AccountKey, sr: &str, share: &str, path: &str, sp: &str) -> String {
    let resource = if sr == "s" {
        format!("/file/{ACCOUNT}/{share}")
    } else {
        format!("/file/{ACCOUNT}/{share}/{path}")
    };
    let sts = [
        sp,
        "",
        SAS_EXPIRY,
        &resource,
        "",
        "",
        "",
        SAS_VERSION,
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    format!(
        "sv={SAS_VERSION}&sr={sr}&sp={sp}&se={}&sig={}",
        enc(SAS_EXPIRY),
        enc(&hmac_b64(key, &sts))
    )
}

/// An account SAS for the file service.
fn account_sas(key: &AccountKey, sp: &str) -> String {
    let mut sts = [ACCOUNT, sp, "f", "sco", "", SAS_EXPIRY, "", "", SAS_VERSION].join("\n");
    sts.push_str("\n\n");
    format!(
        "sv={SAS_VERSION}&ss=f&srt=sco&sp={sp}&se={}&sig={}",
        enc(SAS_EXPIRY),
        enc(&hmac_b64(key, &sts))
    )
}

fn sas_close(target: &str, host: &str) -> Wire {
    Wire::new(
        "PUT",
        target,
        host,
        &[("x-ms-handle-id", "*"), ("x-ms-recursive", "true")],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_replays_never_cross_a_share() {
    let (running, store, key) = start(Addressing::PathStyle).await;
    let addr = running.addr;
    let local = addr.to_string();
    let share_sas = service_sas(&key, "s", "projects", "", "w");
    let file_sas = service_sas(&key, "f", "projects", "x", "w");
    let read_only = account_sas(&key, "rl");
    let relabelled = file_sas.replace("sr=f", "sr=s");
    let on = |path: &str, sas: &str| sas_close(&format!("{path}?{CLOSE_ALL}&{sas}"), &local);
    let replays = vec![
        (
            "a share SAS on share demo",
            on("/demo/demo/projects/x", &share_sas),
            403,
            "AuthenticationFailed",
        ),
        (
            "a share SAS on the account's host name, host-style path",
            on("/projects/x", &share_sas).with_host(Some(HOST_NAME)),
            400,
            "InvalidUri",
        ),
        (
            "a file SAS on share demo",
            on("/demo/demo/projects/x", &file_sas),
            403,
            "AuthenticationFailed",
        ),
        (
            "a file SAS below its path",
            on("/demo/projects/x/a.txt", &file_sas),
            403,
            "AuthenticationFailed",
        ),
        (
            "a file SAS above its path",
            on("/demo/projects", &file_sas),
            403,
            "AuthenticationFailed",
        ),
        // The file SAS string-to-sign does not hold `sr`: relabelled as a share SAS it would
        // match a share named `projects/x`.
        (
            "a file SAS relabelled for the share projects/x",
            on("/demo/projects%2Fx", &relabelled),
            400,
            "InvalidUri",
        ),
        (
            "a file SAS with more permissions",
            on("/demo/projects/x", &file_sas.replace("sp=w", "sp=rw")),
            403,
            "AuthenticationFailed",
        ),
        (
            "a read-only account SAS",
            on("/demo/demo/projects/x", &read_only),
            403,
            "AuthorizationPermissionMismatch",
        ),
        (
            "an account SAS with more permissions",
            on(
                "/demo/demo/projects/x",
                &read_only.replace("sp=rl", "sp=rwl"),
            ),
            403,
            "AuthenticationFailed",
        ),
        (
            "a repeated sr",
            on("/demo/projects/x", &format!("{share_sas}&sr=s")),
            400,
            "InvalidQueryParameterValue",
        ),
    ];
    assert_refused(addr, &store, replays).await;

    // Each SAS still works where it was meant to, the Host notwithstanding.
    let before = snapshot(&store).await;
    let (got, answer) = send(
        addr,
        &on("/demo/projects/x", &file_sas).with_host(Some(HOST_NAME)),
    )
    .await;
    assert_eq!(got, 200, "{answer}");
    let after = snapshot(&store).await;
    assert_eq!(after[0], before[0], "share demo is untouched");
    assert!(after[1].1.is_empty(), "share projects' handles are closed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_on_a_host_style_service_reaches_its_own_share_only() {
    let addressing = Addressing::host_style([HOST_NAME], ACCOUNT).unwrap();
    let (running, store, key) = start(addressing).await;
    let addr = running.addr;
    let local = addr.to_string();
    let share_sas = service_sas(&key, "s", "projects", "", "w");
    let file_sas = service_sas(&key, "f", "demo", "projects/x", "w");
    let all = account_sas(&key, "w");
    let on = |path: &str, sas: &str| sas_close(&format!("{path}?{CLOSE_ALL}&{sas}"), HOST_NAME);
    let replays = vec![
        (
            "a share SAS on the listen address",
            on("/projects/x", &share_sas).with_host(Some(&local)),
            400,
            "InvalidHeaderValue",
        ),
        (
            "an account SAS on the listen address",
            on("/projects/x", &all).with_host(Some(&local)),
            400,
            "InvalidHeaderValue",
        ),
        (
            "a share SAS, path-style path",
            on("/demo/projects/x", &share_sas),
            400,
            "InvalidUri",
        ),
        // Share `demo` is named like the account: not served host-style.
        (
            "a SAS for share demo",
            on("/demo/projects/x", &file_sas),
            400,
            "InvalidUri",
        ),
        (
            "an account SAS, path-style path",
            on("/demo/projects/x", &all),
            400,
            "InvalidUri",
        ),
    ];
    assert_refused(addr, &store, replays).await;
    let before = snapshot(&store).await;
    let (got, answer) = send(addr, &on("/projects/x", &share_sas)).await;
    assert_eq!(got, 200, "{answer}");
    let after = snapshot(&store).await;
    assert_eq!(after[0], before[0], "share demo is untouched");
    assert!(after[1].1.is_empty(), "share projects' handles are closed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn impossible_and_unpublished_versions_are_refused() {
    let (running, store, key) = start(Addressing::PathStyle).await;
    let local = running.addr.to_string();
    let list = |version: &str| {
        Wire::new("GET", "/demo/projects?comp=listhandles", &local, &[])
            .with_header("x-ms-version", Some(version))
            .signed(&key)
    };
    for version in ["2025-02-30", "2025-11-06", "2018-03-28", "2025-13-01"] {
        let (got, answer) = send(running.addr, &list(version)).await;
        assert_eq!(got, 400, "{version}: {answer}");
        assert!(
            answer.contains("x-ms-error-code: InvalidHeaderValue"),
            "{answer}"
        );
        assert!(
            answer.contains("<HeaderName>x-ms-version</HeaderName>"),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("<HeaderValue>{version}</HeaderValue>")),
            "{answer}"
        );
    }
    // Published versions, and one newer than this build knows (a newer SDK), are served.
    for version in ["2018-11-09", "2026-10-06", "2030-01-01"] {
        let (got, answer) = send(running.addr, &list(version)).await;
        assert_eq!(got, 200, "{version}: {answer}");
        assert!(
            answer.contains(&format!("x-ms-version: {version}")),
            "{answer}"
        );
    }
    assert_eq!(snapshot(&store).await[1].1.len(), 2);
    running.shutdown().await;
}
