//! Malformed requests of every kind get the right 4xx from the handle service over a real
//! socket: never a 5xx, never a dropped connection without an answer, never a panic.

mod common_http;

use std::sync::Arc;

use common_http::{ACCOUNT, raw, signed};
use share_hygiene::auth::AccountKey;
use share_hygiene::handles::memory::MemoryStore;
use share_hygiene::server::{HandleServer, RunningServer, ServerConfig};

async fn start() -> (RunningServer, AccountKey) {
    let store = Arc::new(MemoryStore::default());
    store.create_share("share").unwrap();
    let key = AccountKey::random();
    let server = Arc::new(HandleServer::memory(
        ServerConfig::new(ACCOUNT, key.clone()),
        store,
    ));
    (
        server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap(),
        key,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_the_right_4xx() {
    let (running, key) = start().await;
    let addr = running.addr;
    let key2 = key.clone();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("oversized head", format!("GET /acct/share?comp=listhandles HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)).into_bytes(), 431, ""),
        ("oversized body", signed(&key2, "PUT", "/acct/share?comp=forceclosehandles", &[("x-ms-handle-id", "*")], &vec![b'x'; 70_000]), 413, "RequestBodyTooLarge"),
        ("bad UTF-8 in the path", signed(&key2, "GET", "/acct/share/%FF%FE?comp=listhandles", &[], b""), 400, "InvalidUri"),
        ("bad UTF-8 in the query", signed(&key2, "GET", "/acct/share?comp=listhandles&marker=%C3%28", &[], b""), 400, "InvalidQueryParameterValue"),
        ("unknown comp", signed(&key2, "GET", "/acct/share?comp=listfiles", &[], b""), 400, "InvalidQueryParameterValue"),
        ("no comp", signed(&key2, "GET", "/acct/share", &[], b""), 400, "MissingRequiredQueryParameter"),
        ("wrong verb", signed(&key2, "DELETE", "/acct/share?comp=listhandles", &[], b""), 405, "UnsupportedHttpVerb"),
        ("missing handle id", signed(&key2, "PUT", "/acct/share?comp=forceclosehandles", &[], b""), 400, "MissingRequiredHeader"),
        ("bad handle id", signed(&key2, "PUT", "/acct/share?comp=forceclosehandles", &[("x-ms-handle-id", "12ab")], b""), 400, "InvalidHeaderValue"),
        ("bad boolean", signed(&key2, "GET", "/acct/share?comp=listhandles", &[("x-ms-recursive", "yes")], b""), 400, "InvalidHeaderValue"),
        ("bad maxresults", signed(&key2, "GET", "/acct/share?comp=listhandles&maxresults=0", &[], b""), 400, "OutOfRangeQueryParameterValue"),
        ("bad timeout", signed(&key2, "GET", "/acct/share?comp=listhandles&timeout=soon", &[], b""), 400, "InvalidQueryParameterValue"),
        ("forged marker", signed(&key2, "GET", "/acct/share?comp=listhandles&marker=1!4!abcd", &[], b""), 400, "InvalidQueryParameterValue"),
        ("share snapshot", signed(&key2, "GET", "/acct/share?comp=listhandles&sharesnapshot=2024-01-01T00:00:00.0000000Z", &[], b""), 400, "FeatureNotSupported"),
        ("bad version", signed(&key2, "GET", "/acct/share?comp=listhandles", &[("x-ms-version", "yesterday")], b""), 400, "InvalidHeaderValue"),
        ("no credentials", b"GET /acct/share?comp=listhandles HTTP/1.1\r\nHost: x\r\nx-ms-version: 2025-11-05\r\nConnection: close\r\n\r\n".to_vec(), 401, "NoAuthenticationInformation"),
        ("garbage request line", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(), 400, ""),
    ];
    for (what, request, want, code) in cases {
        let (got, answer) = tokio::task::spawn_blocking(move || raw(addr, &request))
            .await
            .unwrap();
        assert_eq!(got, want, "{what}: {answer}");
        if !code.is_empty() {
            assert!(
                answer.contains(&format!("x-ms-error-code: {code}")),
                "{what}: {answer}"
            );
        }
    }
    // The service is still serving after all of that.
    let ok = signed(&key, "GET", "/acct/share?comp=listhandles", &[], b"");
    let (got, _) = tokio::task::spawn_blocking(move || raw(addr, &ok))
        .await
        .unwrap();
    assert_eq!(got, 200);
    running.shutdown().await;
}

/// One signed admin request over a real socket: the status and the raw answer.
async fn admin(
    addr: std::net::SocketAddr,
    key: &AccountKey,
    method: &str,
    target: &str,
    body: &str,
) -> (u16, String) {
    let request = signed(key, method, target, &[], body.as_bytes());
    tokio::task::spawn_blocking(move || raw(addr, &request))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_admin_count_is_a_400_naming_the_bound_and_the_service_keeps_serving() {
    let (running, key) = start().await;
    let addr = running.addr;
    let open = "/acct/_admin/share/f?comp=open";
    // One signed request used to ask for 34 GB of handle ids and abort the process.
    let (got, answer) = admin(
        addr,
        &key,
        "POST",
        open,
        r#"{"client": "10.0.0.1:445", "count": 4294967295}"#,
    )
    .await;
    assert_eq!(got, 400, "{answer}");
    assert!(answer.contains("x-ms-error-code: InvalidInput"), "{answer}");
    assert!(
        answer.contains("count 4294967295 is above the bound of 1000000 handles per open"),
        "{answer}"
    );
    // A misspelled field is refused by name, with the allowed ones.
    let (got, answer) = admin(
        addr,
        &key,
        "POST",
        open,
        r#"{"client": "10.0.0.1:445", "cout": 2}"#,
    )
    .await;
    assert_eq!(got, 400, "{answer}");
    assert!(
        answer.contains("unknown field `cout`, expected one of"),
        "{answer}"
    );
    assert!(answer.contains("<Field>cout</Field>"), "{answer}");

    // Still serving: an open within the bound, and a listing that shows it.
    let (got, answer) = admin(
        addr,
        &key,
        "POST",
        open,
        r#"{"client": "10.0.0.1:445", "count": 3}"#,
    )
    .await;
    assert_eq!(got, 201, "{answer}");
    let (got, answer) = admin(addr, &key, "GET", "/acct/share/f?comp=listhandles", "").await;
    assert_eq!(got, 200, "{answer}");
    assert_eq!(answer.matches("<Handle>").count(), 3, "{answer}");
    running.shutdown().await;
}
