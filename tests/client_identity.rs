//! Tokens from Entra ID over real HTTP on 127.0.0.1, against the tests' own token endpoint
//! (`common_token_endpoint`): workload identity, managed identity, service principals with a
//! secret or a certificate, caching, refresh, retries, errors, and what the handle client and
//! the CLI send with the token.

#[path = "common_token_endpoint/mod.rs"]
mod common_token_endpoint;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use common_token_endpoint::TokenServer;

use share_hygiene::auth::Credential;
use share_hygiene::auth::entra::{Identity, JWT_BEARER_ASSERTION, STORAGE_SCOPE, env};
use share_hygiene::handles::client::{
    ClientOptions, Endpoint, HandleClient, RetryPolicy, TokenError, TokenOptions, TokenProvider,
};
use share_hygiene::handles::{Error, ErrorCategory, HandleService};
use share_hygiene::protocol::{ListRequest, ServiceVersion, Target};

/// A clock the test moves by hand.
struct ManualClock {
    start: Instant,
    offset_secs: Arc<AtomicU64>,
}

impl ManualClock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            offset_secs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn options(&self) -> TokenOptions {
        let (start, offset) = (self.start, self.offset_secs.clone());
        TokenOptions {
            retry: quick_retry(),
            clock: Arc::new(move || start + Duration::from_secs(offset.load(Ordering::Relaxed))),
            ..TokenOptions::default()
        }
    }

    fn advance(&self, secs: u64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("identity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn workload(server: &TokenServer, token_file: &std::path::Path) -> Identity {
    let vars: BTreeMap<&str, String> = [
        (
            env::CLIENT_ID,
            "11111111-2222-3333-4444-555555555555".to_owned(),
        ),
        (env::TENANT_ID, "tenant-a".to_owned()),
        (env::FEDERATED_TOKEN_FILE, token_file.display().to_string()),
        (env::AUTHORITY_HOST, server.authority()),
    ]
    .into_iter()
    .collect();
    Identity::workload_from_env(|k| vars.get(k).cloned(), None).unwrap()
}

fn service_principal(server: &TokenServer, secret: &str) -> Identity {
    let keys = [
        ("tenantId", "tenant-b"),
        ("clientId", "client-b"),
        ("clientSecret", secret),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    Identity::service_principal_from_keys(&keys, Some(&server.authority())).unwrap()
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token_and_rereads_it_after_rotation() {
    let server = TokenServer::start().await;
    let dir = temp_dir("workload");
    let file = dir.join("azure-identity-token");
    std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.first.sig\n").unwrap();
    let clock = ManualClock::new();
    let provider = TokenProvider::new(workload(&server, &file), clock.options()).unwrap();

    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-1");
    let seen = server.take();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/tenant-a/oauth2/v2.0/token");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let want: BTreeMap<String, String> = [
        ("grant_type", "client_credentials"),
        ("client_id", "11111111-2222-3333-4444-555555555555"),
        ("scope", STORAGE_SCOPE),
        ("client_assertion_type", JWT_BEARER_ASSERTION),
        ("client_assertion", "eyJhbGciOiJSUzI1NiJ9.first.sig"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(req.form, want);

    // The kubelet rotates the projected token; the next exchange sends the new one.
    std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.second.sig").unwrap();
    clock.advance(3599 - 299);
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-2");
    let seen = server.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].form["client_assertion"],
        "eyJhbGciOiJSUzI1NiJ9.second.sig"
    );

    // A missing token file is a credential error naming the file, with no request sent.
    std::fs::remove_file(&file).unwrap();
    clock.advance(3600);
    let err = provider.token().await.unwrap_err().to_string();
    assert!(err.contains("azure-identity-token"), "{err}");
    assert!(server.take().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn managed_identity_asks_imds_with_the_metadata_header_and_client_id() {
    let server = TokenServer::start().await;
    for client_id in [None, Some("99999999-8888-7777-6666-555555555555")] {
        let identity = Identity::Managed {
            endpoint: format!("http://{}/metadata/identity/oauth2/token", server.addr),
            client_id: client_id.map(str::to_owned),
        };
        let provider = TokenProvider::new(identity, ManualClock::new().options()).unwrap();
        server.answer(
            200,
            r#"{"access_token":"imds-token","expires_in":"86399","expires_on":"1800000000","resource":"https://storage.azure.com/","token_type":"Bearer"}"#,
        );
        assert_eq!(
            provider.token().await.unwrap().expose_secret(),
            "imds-token"
        );
        let seen = server.take();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/metadata/identity/oauth2/token");
        assert_eq!(req.header("metadata"), Some("true"));
        assert_eq!(req.query["api-version"], "2018-02-01");
        assert_eq!(req.query["resource"], "https://storage.azure.com/");
        assert_eq!(req.query.get("client_id").map(String::as_str), client_id);
    }
}

#[tokio::test]
async fn service_principal_sends_its_secret_and_one_token_serves_many_calls() {
    let server = TokenServer::start().await;
    let provider = TokenProvider::new(
        service_principal(&server, "client~secret=value"),
        ManualClock::new().options(),
    )
    .unwrap();
    let provider = Arc::new(provider);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.unwrap().expose_secret().to_owned() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "token-1");
    }
    let seen = server.take();
    assert_eq!(seen.len(), 1, "concurrent callers share one request");
    assert_eq!(seen[0].path, "/tenant-b/oauth2/v2.0/token");
    assert_eq!(seen[0].form["grant_type"], "client_credentials");
    assert_eq!(seen[0].form["client_id"], "client-b");
    assert_eq!(seen[0].form["client_secret"], "client~secret=value");
    assert_eq!(seen[0].form["scope"], STORAGE_SCOPE);
    assert!(!seen[0].form.contains_key("client_assertion"));
}

#[tokio::test]
async fn a_certificate_signs_a_fresh_assertion_for_each_exchange() {
    let server = TokenServer::start().await;
    let pem = include_str!("fixtures/entra-client-certificate.pem");
    let keys = [
        ("tenantId", "tenant-c"),
        ("clientId", "client-c"),
        ("clientCertificate", pem),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let identity = Identity::service_principal_from_keys(&keys, Some(&server.authority())).unwrap();
    assert!(!format!("{identity:?}").contains("PRIVATE"));
    let clock = ManualClock::new();
    let provider = TokenProvider::new(identity, clock.options()).unwrap();
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-1");
    clock.advance(3600);
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-2");
    let seen = server.take();
    assert_eq!(seen.len(), 2);
    let url = format!("http://{}/tenant-c/oauth2/v2.0/token", server.addr);
    let mut ids = Vec::new();
    for req in &seen {
        assert_eq!(req.path, "/tenant-c/oauth2/v2.0/token");
        assert_eq!(req.form["client_assertion_type"], JWT_BEARER_ASSERTION);
        assert!(!req.form.contains_key("client_secret"));
        let parts: Vec<&str> = req.form["client_assertion"].split('.').collect();
        assert_eq!(parts.len(), 3);
        let json = |p: &str| -> serde_json::Value {
            use base64::Engine;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap();
            serde_json::from_slice(&raw).unwrap()
        };
        assert_eq!(json(parts[0])["x5t"], "rSWrQM5I7CVKR3TmehDH_he0d4k");
        let claims = json(parts[1]);
        assert_eq!(claims["aud"], url.as_str());
        assert_eq!(claims["sub"], "client-c");
        ids.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1], "each assertion is unique");
}

#[tokio::test]
async fn a_token_is_refreshed_five_minutes_before_it_expires() {
    let server = TokenServer::start().await;
    let clock = ManualClock::new();
    let provider =
        TokenProvider::new(service_principal(&server, "secret-1"), clock.options()).unwrap();
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-1");
    clock.advance(3599 - 301); // 5 minutes and a second before expiry: still fresh.
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-1");
    assert_eq!(provider.requests(), 1);
    clock.advance(2);
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-2");
    assert_eq!(provider.requests(), 2);

    // A failed refresh falls back on the token while it still works, not after.
    server.answer(400, r#"{"error":"invalid_grant","error_codes":[70000]}"#);
    clock.advance(3599 - 200);
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-2");
    server.answer(400, r#"{"error":"invalid_grant","error_codes":[70000]}"#);
    clock.advance(300);
    let err = provider.token().await.unwrap_err().to_string();
    assert!(err.contains("invalid_grant (AADSTS70000)"), "{err}");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_backoff() {
    let server = TokenServer::start().await;
    let provider = TokenProvider::new(
        service_principal(&server, "secret-2"),
        ManualClock::new().options(),
    )
    .unwrap();
    server.answer(
        503,
        r#"{"error":"temporarily_unavailable","error_codes":[90033]}"#,
    );
    server.answer(429, "");
    assert_eq!(provider.token().await.unwrap().expose_secret(), "token-1");
    assert_eq!(provider.requests(), 3);

    // Past the retries, the last answer is the error.
    let provider = TokenProvider::new(
        service_principal(&server, "secret-3"),
        ManualClock::new().options(),
    )
    .unwrap();
    for _ in 0..4 {
        server.answer(
            503,
            r#"{"error":"temporarily_unavailable","error_codes":[90033]}"#,
        );
    }
    let err = provider.token().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("503 temporarily_unavailable (AADSTS90033)"),
        "{err}"
    );
    assert_eq!(provider.requests(), 4);
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // A port nothing listens on: every attempt fails to connect.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let identity = Identity::Managed {
        endpoint: format!("http://{addr}/metadata/identity/oauth2/token"),
        client_id: None,
    };
    let provider = TokenProvider::new(identity, ManualClock::new().options()).unwrap();
    let err = provider.token().await.unwrap_err();
    assert!(matches!(err, TokenError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("asking for a token"), "{err}");
    assert_eq!(provider.requests(), 4, "the first attempt and 3 retries");
}

#[tokio::test]
async fn an_invalid_client_error_carries_its_code_and_no_secret() {
    let server = TokenServer::start().await;
    let dir = temp_dir("invalid-client");
    let file = dir.join("token");
    let assertion = "eyJhbGciOiJSUzI1NiJ9.assertion-payload.sig";
    std::fs::write(&file, assertion).unwrap();
    let secret = "Xq8Q~very-secret-client-value";
    // Each identity's endpoint answer echoes what that identity sent.
    for (identity, sent) in [
        (workload(&server, &file), assertion),
        (service_principal(&server, secret), secret),
    ] {
        let provider = TokenProvider::new(identity, ManualClock::new().options()).unwrap();
        server.answer(
            401,
            &format!(
                r#"{{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range. Sent: {sent}\r\nTrace ID: abc\r\nCorrelation ID: def","error_codes":[700024],"timestamp":"2026-12-06 16:00:00Z","trace_id":"abc","correlation_id":"cafe-0001"}}"#
            ),
        );
        let err = provider.token().await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("invalid_client (AADSTS700024)"), "{text}");
        assert!(text.contains("cafe-0001"), "{text}");
        assert!(!text.contains("assertion-payload"), "{text}");
        assert!(!text.contains("very-secret"), "{text}");
        assert_eq!(provider.requests(), 1, "a 401 is not retried");
        server.take();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_handle_client_sends_the_entra_token_with_a_backup_intent() {
    let server = TokenServer::start().await;
    let endpoint = Endpoint::parse(&format!("http://{}/acct", server.addr)).unwrap();
    let client = HandleClient::new(
        endpoint.clone(),
        Credential::Entra(service_principal(&server, "secret-4")),
        ClientOptions::default(),
    )
    .unwrap();
    let list = ListRequest {
        target: Target::directory("share", "", true),
        marker: None,
        max_results: None,
    };
    for _ in 0..3 {
        client.list_handles(&list).await.unwrap();
    }
    let seen = server.take();
    let (tokens, calls): (Vec<_>, Vec<_>) = seen.iter().partition(|s| s.path.contains("oauth2"));
    assert_eq!(tokens.len(), 1, "one token for three calls");
    assert_eq!(calls.len(), 3);
    for call in calls {
        assert_eq!(call.header("authorization"), Some("Bearer token-1"));
        assert_eq!(call.header("x-ms-file-request-intent"), Some("backup"));
        let version: ServiceVersion = call.header("x-ms-version").unwrap().parse().unwrap();
        assert!(version >= ServiceVersion::V2022_11_02, "{version}");
    }

    // Another client for the same identity shares the cached token.
    let again = HandleClient::new(
        endpoint.clone(),
        Credential::Entra(service_principal(&server, "secret-4")),
        ClientOptions::default(),
    )
    .unwrap();
    again.list_handles(&list).await.unwrap();
    assert_eq!(server.take().len(), 1, "no new token request");

    // A refusal from Entra fails the call as a credential error before the service is asked.
    server.answer(
        400,
        r#"{"error":"unauthorized_client","error_codes":[700016]}"#,
    );
    let failing = HandleClient::new(
        endpoint.clone(),
        Credential::Entra(service_principal(&server, "secret-5")),
        ClientOptions::default(),
    )
    .unwrap();
    let err = failing.list_handles(&list).await.unwrap_err();
    assert!(matches!(err, Error::Credential { .. }), "{err:?}");
    assert_eq!(err.category(), ErrorCategory::Credential);
    assert!(err.to_string().contains("AADSTS700016"), "{err}");
    assert!(server.take().iter().all(|s| s.path.contains("oauth2")));

    // Versions before OAuth on the file service are refused up front.
    let old = ClientOptions {
        version: "2021-12-02".parse().unwrap(),
        ..ClientOptions::default()
    };
    let err = HandleClient::new(
        endpoint,
        Credential::Entra(service_principal(&server, "secret-4")),
        old,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("2022-11-02"), "{err}");
}

#[tokio::test]
async fn the_cli_logs_in_with_workload_identity_as_az_does() {
    let server = TokenServer::start().await;
    let dir = temp_dir("cli");
    let file = dir.join("azure-identity-token");
    std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.cli.sig").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
        .args([
            "handles",
            "list",
            "--auth-mode",
            "login",
            "--share-url",
            &format!("http://{}/acct/share", server.addr),
        ])
        .env_clear()
        .env(env::CLIENT_ID, "cli-client")
        .env(env::TENANT_ID, "cli-tenant")
        .env(env::FEDERATED_TOKEN_FILE, &file)
        .env(env::AUTHORITY_HOST, server.authority())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("cli.sig") && !stderr.contains("token-1"),
        "{stderr}"
    );
    let seen = server.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, "/cli-tenant/oauth2/v2.0/token");
    assert_eq!(seen[0].form["client_id"], "cli-client");
    assert_eq!(
        seen[0].form["client_assertion"],
        "eyJhbGciOiJSUzI1NiJ9.cli.sig"
    );
    assert_eq!(seen[1].path, "/acct/share");
    assert_eq!(seen[1].header("authorization"), Some("Bearer token-1"));
    assert_eq!(seen[1].header("x-ms-file-request-intent"), Some("backup"));
    std::fs::remove_dir_all(&dir).unwrap();
}
