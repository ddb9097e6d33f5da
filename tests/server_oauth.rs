//! OAuth bearer tokens on the handle service, against a local Entra ID over real HTTP
//! (tests/common_entra): valid tokens list and close; expired, forged, misaddressed and
//! unsigned tokens get Azure's 401 `InvalidAuthenticationInfo` with its `WWW-Authenticate`
//! challenge; a reader may list but not close; an unknown key id refreshes the issuer's keys
//! once; `--no-shared-key` refuses Shared Key and SAS as an account with key access
//! disabled does.

mod common_entra;
mod common_http;

use std::sync::Arc;

use common_entra::{Entra, SigningKey, now, unsigned};
use common_http::ACCOUNT;
use serde_json::{Value, json};
use share_hygiene::auth::{AccountKey, RequestView, parse_query, shared_key_string_to_sign, sign};
use share_hygiene::handles::memory::{MemoryStore, OpenSpec};
use share_hygiene::protocol::AccessRights;
use share_hygiene::server::{HandleServer, OAuthConfig, RunningServer, ServerConfig};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const READER: &str = "11111111-0000-0000-0000-000000000001";
const CONTRIBUTOR: &str = "22222222-0000-0000-0000-000000000002";
const STRANGER: &str = "33333333-0000-0000-0000-000000000003";
/// The app role that makes any principal a contributor.
const CLOSER_ROLE: &str = "Handles.Close";
const SHARE: &str = "myshare";
const VERSION: &str = "2025-11-05";

struct Setup {
    entra: Entra,
    service: RunningServer,
    store: Arc<MemoryStore>,
    key: AccountKey,
}

impl Setup {
    async fn start(shared_key: bool) -> Self {
        let entra = Entra::start(TENANT).await;
        let store = Arc::new(MemoryStore::default());
        store.create_share(SHARE).unwrap();
        let spec = OpenSpec {
            client_ip: "10.0.0.9:445".into(),
            client_name: None,
            session_id: None,
            open_time: jiff::Timestamp::now(),
            last_reconnect_time: None,
            access_rights: AccessRights::READ,
            directory: false,
            count: 3,
            fail_close: false,
        };
        store.open(SHARE, "dir/a.txt", &spec).unwrap();
        let key = AccountKey::random();
        let mut config = ServerConfig::new(ACCOUNT, key.clone());
        let mut oauth = OAuthConfig::new(&entra.issuer(), TENANT).unwrap();
        oauth.readers = vec![READER.into()];
        oauth.contributors = vec![CONTRIBUTOR.into(), format!("role:{CLOSER_ROLE}")];
        config.oauth = Some(oauth);
        config.allow_shared_key_access = shared_key;
        let server = Arc::new(HandleServer::memory(config, store.clone()));
        let service = server.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
        Self {
            entra,
            service,
            store,
            key,
        }
    }

    fn url(&self, comp: &str) -> String {
        format!(
            "http://{}/{ACCOUNT}/{SHARE}/dir?comp={comp}",
            self.service.addr
        )
    }

    fn open_handles(&self) -> u64 {
        self.store.stats().handles as u64
    }

    /// List Handles (recursive) with `token`.
    async fn list(&self, token: &str) -> Answer {
        let req = http()
            .get(self.url("listhandles"))
            .header("x-ms-recursive", "true");
        send(bearer(req, token)).await
    }

    /// Force Close Handles `*` (recursive) with `token`.
    async fn close_all(&self, token: &str) -> Answer {
        let req = http()
            .put(self.url("forceclosehandles"))
            .header("x-ms-handle-id", "*")
            .header("x-ms-recursive", "true")
            .header("content-length", "0");
        send(bearer(req, token)).await
    }
}

fn http() -> reqwest::Client {
    share_hygiene::install_crypto_provider();
    reqwest::Client::new()
}

fn bearer(req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
        .header("x-ms-version", VERSION)
        .header("x-ms-file-request-intent", "backup")
}

struct Answer {
    status: u16,
    code: String,
    challenge: Option<String>,
    closed: Option<String>,
    body: String,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let status = resp.status().as_u16();
    let code = header("x-ms-error-code").unwrap_or_default();
    let challenge = header("www-authenticate");
    let closed = header("x-ms-number-of-handles-closed");
    let body = resp.text().await.unwrap();
    Answer {
        status,
        code,
        challenge,
        closed,
        body,
    }
}

fn challenge() -> String {
    format!(
        "Bearer authorization_uri=https://login.microsoftonline.com/{TENANT}/oauth2/authorize resource_id=https://storage.azure.com"
    )
}

/// Asserts Azure's refusal of a token it cannot accept, with `detail` in the body and no
/// part of the token anywhere in the answer.
fn assert_invalid_token(answer: &Answer, token: &str, detail: &str, case: &str) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.body);
    assert_eq!(answer.code, "InvalidAuthenticationInfo", "{case}");
    assert_eq!(
        answer.challenge.as_deref(),
        Some(challenge().as_str()),
        "{case}"
    );
    assert!(answer.body.contains(detail), "{case}: {}", answer.body);
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(
            !answer.body.contains(part),
            "{case}: the answer echoes the token"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contributors_token_lists_and_closes() {
    let s = Setup::start(true).await;
    let token = s.entra.token(&s.entra.claims(CONTRIBUTOR));
    let list = s.list(&token).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body.matches("<Handle>").count(), 3, "{}", list.body);
    let close = s.close_all(&token).await;
    assert_eq!(close.status, 200, "{}", close.body);
    assert_eq!(close.closed.as_deref(), Some("3"));
    assert_eq!(s.open_handles(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn audiences_azure_accepts_are_accepted() {
    let s = Setup::start(true).await;
    for aud in [
        json!("https://storage.azure.com"),
        json!("https://storage.azure.com/"),
        json!(format!("https://{ACCOUNT}.file.core.windows.net")),
        json!(["https://vault.azure.net", "https://storage.azure.com/"]),
    ] {
        let mut claims = s.entra.claims(READER);
        claims["aud"] = aud.clone();
        let answer = s.list(&s.entra.token(&claims)).await;
        assert_eq!(answer.status, 200, "aud {aud}: {}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_401_with_the_bearer_challenge() {
    let s = Setup::start(true).await;
    let mut claims = s.entra.claims(CONTRIBUTOR);
    // Ten minutes past expiry: beyond the five minutes of clock skew.
    claims["exp"] = json!(now() - 600);
    let token = s.entra.token(&claims);
    let answer = s.list(&token).await;
    assert_invalid_token(
        &answer,
        &token,
        "Lifetime validation failed. The token is expired.",
        "expired",
    );
    // Within the skew it is still good, as on Azure.
    claims["exp"] = json!(now() - 60);
    assert_eq!(s.list(&s.entra.token(&claims)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_misaddressed_and_unsigned_tokens_are_refused() {
    let s = Setup::start(true).await;
    let good = s.entra.claims(CONTRIBUTOR);
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let kid = s.entra.current_key().kid.clone();
    // Another key under the issuer's key id: what an attacker without the issuer's key can do.
    let forger = SigningKey::generate(&kid);
    // HS256 with the issuer's public key bytes as the HMAC secret (key confusion).
    let public_n = s.entra.current_key().jwk()["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let hs256 = {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(good.to_string())
        );
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_n.as_bytes()),
            signed.as_bytes(),
        );
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let cases = [
        (
            "wrong audience",
            s.entra
                .token(&with("aud", json!("https://vault.azure.net"))),
            "Audience validation failed. Audience did not match",
        ),
        (
            "other account's audience",
            s.entra
                .token(&with("aud", json!("https://other.file.core.windows.net"))),
            "Audience validation failed",
        ),
        (
            "bad signature",
            forger.sign(&good),
            "Signature validation failed",
        ),
        (
            "wrong issuer",
            s.entra.token(&with(
                "iss",
                json!(format!("https://sts.windows.net/{TENANT}/")),
            )),
            "Issuer validation failed. Issuer did not match",
        ),
        (
            "wrong tenant",
            s.entra
                .token(&with("tid", json!("00000000-0000-0000-0000-00000000bad0"))),
            "Tenant validation failed",
        ),
        ("alg none", unsigned(&kid, &good), "only RS256"),
        ("HS256 key confusion", hs256, "only RS256"),
        (
            "RS256 header, no kid",
            s.entra
                .current_key()
                .sign_with_header(&json!({"alg": "RS256"}), &good),
            "no kid",
        ),
        (
            "not yet valid",
            s.entra.token(&with("nbf", json!(now() + 3600))),
            "Lifetime validation failed. The token is not yet valid.",
        ),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
    ];
    for (case, token, detail) in &cases {
        let answer = s.list(token).await;
        assert_invalid_token(&answer, token, detail, case);
        let answer = s.close_all(token).await;
        assert_invalid_token(&answer, token, detail, case);
    }
    assert_eq!(s.open_handles(), 3, "a refused token closed handles");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_lists_but_may_not_close_and_a_stranger_may_do_neither() {
    let s = Setup::start(true).await;
    let reader = s.entra.token(&s.entra.claims(READER));
    assert_eq!(s.list(&reader).await.status, 200);
    let close = s.close_all(&reader).await;
    assert_eq!(close.status, 403, "{}", close.body);
    assert_eq!(close.code, "AuthorizationPermissionMismatch");
    assert_eq!(close.challenge, None);
    assert_eq!(s.open_handles(), 3, "a reader closed handles");

    let stranger = s.entra.token(&s.entra.claims(STRANGER));
    for answer in [s.list(&stranger).await, s.close_all(&stranger).await] {
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_eq!(answer.code, "AuthorizationPermissionMismatch");
    }
    assert_eq!(s.open_handles(), 3);

    // Roles are compared exactly: another role, or the name in another case, is no grant.
    for roles in [
        json!(["Handles.Read"]),
        json!(["handles.close"]),
        json!("Handles.Close"),
    ] {
        let mut claims = s.entra.claims(STRANGER);
        claims["roles"] = roles.clone();
        let answer = s.close_all(&s.entra.token(&claims)).await;
        assert_ne!(answer.status, 200, "roles {roles}: {}", answer.body);
    }
    assert_eq!(s.open_handles(), 3);

    // An application allowed by its client id (appid) rather than its object id.
    let mut claims = s.entra.claims(STRANGER);
    claims["appid"] = json!(CONTRIBUTOR);
    assert_eq!(s.close_all(&s.entra.token(&claims)).await.status, 200);
    assert_eq!(s.open_handles(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_named_as_contributor_may_close() {
    let s = Setup::start(true).await;
    let mut claims = s.entra.claims(STRANGER);
    claims["roles"] = json!(["Handles.Read", CLOSER_ROLE]);
    let answer = s.close_all(&s.entra.token(&claims)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(s.open_handles(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_id_refreshes_the_keys_once() {
    let s = Setup::start(true).await;
    let first = s.entra.token(&s.entra.claims(READER));
    assert_eq!(s.list(&first).await.status, 200);
    assert_eq!(s.list(&first).await.status, 200);
    assert_eq!(s.entra.jwks_fetches(), 1, "keys are cached");

    // The issuer rotates: tokens signed by the new key are accepted after one refresh.
    s.entra.rotate("key-2");
    let rotated = s.entra.token(&s.entra.claims(READER));
    assert_eq!(s.list(&rotated).await.status, 200);
    assert_eq!(s.entra.jwks_fetches(), 2);
    assert_eq!(s.list(&rotated).await.status, 200);
    assert_eq!(s.entra.jwks_fetches(), 2);

    // Made-up key ids do not make the service fetch again within the refresh interval.
    for kid in ["made-up-1", "made-up-2", "made-up-3"] {
        let token = SigningKey::generate(kid).sign(&s.entra.claims(READER));
        let answer = s.list(&token).await;
        assert_invalid_token(&answer, &token, "Signature key not found", kid);
    }
    assert_eq!(
        s.entra.jwks_fetches(),
        2,
        "unknown key ids hammered the issuer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_requests_keep_the_intent_and_version_rules() {
    let s = Setup::start(true).await;
    let token = s.entra.token(&s.entra.claims(CONTRIBUTOR));
    let no_intent = send(
        http()
            .get(s.url("listhandles"))
            .header("authorization", format!("Bearer {token}"))
            .header("x-ms-version", VERSION),
    )
    .await;
    assert_eq!(no_intent.status, 400, "{}", no_intent.body);
    assert_eq!(no_intent.code, "MissingRequiredHeader");
    let old = send(
        http()
            .get(s.url("listhandles"))
            .header("authorization", format!("Bearer {token}"))
            .header("x-ms-version", "2021-12-02")
            .header("x-ms-file-request-intent", "backup"),
    )
    .await;
    assert_eq!(old.status, 400, "{}", old.body);
    assert_eq!(old.code, "InvalidHeaderValue");
}

/// A Shared Key signed List Handles request.
fn shared_key_list(s: &Setup) -> reqwest::RequestBuilder {
    let target = format!("/{ACCOUNT}/{SHARE}/dir");
    let mut headers = http::HeaderMap::new();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    headers.insert("x-ms-date", date.parse().unwrap());
    headers.insert("x-ms-version", VERSION.parse().unwrap());
    let query = parse_query("comp=listhandles").unwrap();
    let view = RequestView {
        method: "GET",
        raw_path: &target,
        query: &query,
        headers: &headers,
    };
    let sts = shared_key_string_to_sign(&view, ACCOUNT, &target);
    let auth = format!("SharedKey {ACCOUNT}:{}", sign(&s.key, &sts));
    http()
        .get(s.url("listhandles"))
        .headers(headers)
        .header("authorization", auth)
}

/// A List Handles request with an account SAS for the file service.
fn sas_list(s: &Setup) -> reqwest::RequestBuilder {
    let expiry = "2099-01-01T00:00:00Z";
    let sts = format!("{ACCOUNT}\nrl\nf\nsco\n\n{expiry}\n\n\n{VERSION}\n\n");
    let sig = sign(&s.key, &sts);
    let enc = |v: &str| {
        percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let url = format!(
        "{}&sv={VERSION}&ss=f&srt=sco&sp=rl&se={}&sig={}",
        s.url("listhandles"),
        enc(expiry),
        enc(&sig)
    );
    http().get(url).header("x-ms-version", VERSION)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_shared_key_access_keys_and_sas_are_refused_and_tokens_work() {
    let open = Setup::start(true).await;
    assert_eq!(send(shared_key_list(&open)).await.status, 200);
    assert_eq!(send(sas_list(&open)).await.status, 200);

    let s = Setup::start(false).await;
    for (what, answer) in [
        ("Shared Key", send(shared_key_list(&s)).await),
        ("SAS", send(sas_list(&s)).await),
    ] {
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        assert_eq!(answer.code, "KeyBasedAuthenticationNotPermitted", "{what}");
        assert!(
            answer
                .body
                .contains("Key based authentication is not permitted on this storage account."),
            "{what}: {}",
            answer.body
        );
    }
    let token = s.entra.token(&s.entra.claims(CONTRIBUTOR));
    assert_eq!(s.list(&token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_the_local_entra_token_endpoint_are_accepted() {
    let s = Setup::start(false).await;
    let form = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let token_of = |body: String| {
        let endpoint = s.entra.token_endpoint();
        async move {
            let resp = http()
                .post(endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let json: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            (status, json["access_token"].as_str().map(str::to_owned))
        }
    };
    // A client secret.
    s.entra.add_secret_app("secret-app", CONTRIBUTOR, "s3cret");
    let (status, token) = token_of(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "secret-app"),
        ("client_secret", "s3cret"),
        ("scope", "https://storage.azure.com/.default"),
    ]))
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.list(&token.unwrap()).await.status, 200);
    let (status, _) = token_of(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "secret-app"),
        ("client_secret", "wrong"),
        ("scope", "https://storage.azure.com/.default"),
    ]))
    .await;
    assert_eq!(status, 400);

    // Workload identity: a service-account token from the cluster's issuer as the assertion.
    let cluster = Arc::new(SigningKey::generate("sa-key"));
    let cluster_issuer = "https://oidc.cluster.example/";
    let subject = "system:serviceaccount:share-hygiene:controller";
    s.entra
        .add_federated_app("wi-app", READER, cluster_issuer, subject, cluster.clone());
    let assertion = |key: &SigningKey, sub: &str| {
        key.sign(&json!({
            "iss": cluster_issuer,
            "sub": sub,
            "aud": common_entra::ASSERTION_AUDIENCE,
            "exp": now() + 600,
        }))
    };
    let federated = |assertion: String| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "wi-app"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
            ("scope", "https://storage.azure.com/.default"),
        ])
    };
    let (status, token) = token_of(federated(assertion(&cluster, subject))).await;
    assert_eq!(status, 200);
    let token = token.unwrap();
    assert_eq!(s.list(&token).await.status, 200);
    assert_eq!(s.close_all(&token).await.status, 403, "a reader closed");
    let (status, _) = token_of(federated(assertion(&cluster, "system:serviceaccount:x:y"))).await;
    assert_eq!(status, 400, "another subject got a token");
    let (status, _) = token_of(federated(assertion(
        &SigningKey::generate("sa-key"),
        subject,
    )))
    .await;
    assert_eq!(status, 400, "a forged assertion got a token");

    // Managed identity, as IMDS hands it out.
    s.entra.add_managed_identity("mi-client", CONTRIBUTOR);
    let imds = |metadata: bool| {
        let mut req = http().get(format!(
            "{}?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com",
            s.entra.imds_endpoint()
        ));
        if metadata {
            req = req.header("Metadata", "true");
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let json: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            (status, json["access_token"].as_str().map(str::to_owned))
        }
    };
    assert_eq!(imds(false).await.0, 400, "IMDS needs Metadata: true");
    let (status, token) = imds(true).await;
    assert_eq!(status, 200);
    assert_eq!(s.close_all(&token.unwrap()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_issuer_is_a_500_that_does_not_hammer_it() {
    // An "issuer" that accepts connections and drops them, counting them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/{TENANT}/v2.0", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    let dropper = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let store = Arc::new(MemoryStore::default());
    store.create_share(SHARE).unwrap();
    let mut config = ServerConfig::new(ACCOUNT, AccountKey::random());
    let mut oauth = OAuthConfig::new(&issuer, TENANT).unwrap();
    oauth.contributors = vec![CONTRIBUTOR.into()];
    config.oauth = Some(oauth);
    let service = Arc::new(HandleServer::memory(config, store))
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}/{ACCOUNT}/{SHARE}?comp=listhandles", service.addr);
    let token = SigningKey::generate("k").sign(&json!({"exp": now() + 600}));
    let first = send(bearer(http().get(&url), &token)).await;
    assert_eq!(first.status, 500, "{}", first.body);
    assert_eq!(first.code, "InternalError");
    let tried = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried >= 1);
    for _ in 0..3 {
        assert_eq!(send(bearer(http().get(&url), &token)).await.status, 500);
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        tried,
        "every request fetched again"
    );
    service.shutdown().await;
    dropper.abort();
}

#[test]
fn the_command_line_refuses_an_issuer_keys_could_be_swapped_on_and_key_refusal_without_oauth() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_share-hygiene"))
            .arg("handle-service")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("SHARE_HYGIENE_ACCOUNT_KEY", "a2V5")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[
        "--oauth-issuer",
        "http://idp.example/t/v2.0",
        "--oauth-tenant",
        "t",
    ]);
    assert!(err.contains("--oauth-issuer"), "{err}");
    assert!(
        err.contains("plain http is accepted only on a loopback host"),
        "{err}"
    );
    let err = run(&["--no-shared-key"]);
    assert!(err.contains("--oauth-issuer"), "{err}");
    let err = run(&["--oauth-issuer", "https://login.microsoftonline.com/t/v2.0"]);
    assert!(err.contains("--oauth-tenant"), "{err}");
}
