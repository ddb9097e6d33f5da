//! A local Entra ID for tests, over real HTTP on loopback: an OpenID configuration, a JWKS,
//! and a token endpoint that takes `client_credentials` with a client secret or with a
//! federated `client_assertion` (a JWT from a trusted issuer standing for the cluster's
//! service-account issuer, as workload identity sends). It issues RS256 access tokens with
//! `aud`, `iss`, `tid`, `oid`, `appid`, `nbf` and `exp`, like Entra's v1 storage tokens.
//!
//! Paths follow Entra's: issuer `http://127.0.0.1:PORT/{tenant}/v2.0`, its configuration at
//! `{issuer}/.well-known/openid-configuration`, keys at `/{tenant}/discovery/v2.0/keys`,
//! tokens at `/{tenant}/oauth2/v2.0/token`. It also plays the Azure Instance Metadata
//! Service's managed identity endpoint, `GET /metadata/identity/oauth2/token?resource=R`
//! (with `Metadata: true`; `client_id=` picks a user-assigned identity).
//!
//! RSA keys come from the `openssl` command (ring signs but does not generate RSA keys).

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The audience of federated assertions, as Entra requires it.
pub const ASSERTION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The storage audience in Entra's v1 spelling.
pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com/";

/// An RSA signing key with its key id.
pub struct SigningKey {
    /// The key id tokens name.
    pub kid: String,
    pair: RsaKeyPair,
}

impl SigningKey {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> Self {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .expect("running openssl (the tests need the openssl command)");
        assert!(out.status.success(), "openssl genpkey failed");
        let pair =
            RsaKeyPair::from_der(&out.stdout).expect("openssl writes an RSAPrivateKey in DER");
        Self {
            kid: kid.to_owned(),
            pair,
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let public = self.public();
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    fn public(&self) -> RsaPublicKeyComponents<Vec<u8>> {
        RsaPublicKeyComponents::from(self.pair.public())
    }

    /// A compact RS256 JWS of `claims` with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// `claims` signed (RS256) under any `header`, for tests of refused headers.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .expect("signing");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Whether `token` is an RS256 JWS this key signed; its claims if so.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let (signed, sig) = token.rsplit_once('.')?;
        let (header, payload) = signed.split_once('.')?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "RS256" {
            return None;
        }
        self.public()
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).ok()?,
            )
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// An unsigned token (`alg: none`) of `claims`.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// An application registration: who it is, and how it proves it.
#[derive(Clone)]
struct App {
    /// The service principal's object id, put in `oid`.
    oid: String,
    secret: Option<String>,
    /// `(issuer, subject)` of the federated credential.
    federated: Option<(String, String)>,
}

struct State {
    /// Published keys; the last one signs.
    keys: Vec<Arc<SigningKey>>,
    jwks_fetches: usize,
    apps: HashMap<String, App>,
    /// Managed identities by client id: their object ids. The first is the default.
    managed: Vec<(String, String)>,
    /// Issuers trusted for federated assertions, with their keys.
    federation: HashMap<String, Arc<SigningKey>>,
    tokens_issued: usize,
    /// Seconds an access token from the token endpoint lives.
    token_lifetime: i64,
}

/// The running local Entra ID.
pub struct Entra {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The tenant id.
    pub tenant: String,
    /// Its base URL, `http://127.0.0.1:PORT` (the "authority host").
    pub base: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for Entra {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Entra {
    /// Starts an issuer for `tenant` on a loopback port, with one signing key.
    pub async fn start(tenant: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State {
            keys: vec![Arc::new(SigningKey::generate("key-1"))],
            jwks_fetches: 0,
            apps: HashMap::new(),
            managed: Vec::new(),
            federation: HashMap::new(),
            tokens_issued: 0,
            token_lifetime: 3600,
        }));
        let ctx = Arc::new(Ctx {
            tenant: tenant.to_owned(),
            base: base.clone(),
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, std::convert::Infallible>(ctx.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            tenant: tenant.to_owned(),
            base,
            state,
            task,
        }
    }

    /// The issuer URL tokens carry in `iss` and the service is configured with.
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.base, self.tenant)
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base, self.tenant)
    }

    /// Claims of a valid storage access token for the principal `oid`, valid for an hour.
    pub fn claims(&self, oid: &str) -> Value {
        let now = now();
        json!({
            "aud": STORAGE_AUDIENCE,
            "iss": self.issuer(),
            "tid": self.tenant,
            "oid": oid,
            "sub": oid,
            "appid": format!("app-of-{oid}"),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        })
    }

    /// `claims` signed with the current key.
    pub fn token(&self, claims: &Value) -> String {
        self.current_key().sign(claims)
    }

    /// The key that signs now.
    pub fn current_key(&self) -> Arc<SigningKey> {
        self.state.lock().unwrap().keys.last().unwrap().clone()
    }

    /// Publishes a new key and signs with it from now on (a key rotation).
    pub fn rotate(&self, kid: &str) {
        let key = Arc::new(SigningKey::generate(kid));
        self.state.lock().unwrap().keys.push(key);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    /// How many access tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens_issued
    }

    /// Access tokens from the token endpoint live `secs` seconds from now on (an hour by
    /// default), so that a test can outlive one.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.state.lock().unwrap().token_lifetime = secs;
    }

    /// Registers an application `client_id` (principal `oid`) that proves itself with `secret`.
    pub fn add_secret_app(&self, client_id: &str, oid: &str, secret: &str) {
        self.state.lock().unwrap().apps.insert(
            client_id.to_owned(),
            App {
                oid: oid.to_owned(),
                secret: Some(secret.to_owned()),
                federated: None,
            },
        );
    }

    /// Assigns a managed identity `client_id` (principal `oid`) to "this VM"; the first one
    /// assigned answers requests that name no `client_id`.
    pub fn add_managed_identity(&self, client_id: &str, oid: &str) {
        self.state
            .lock()
            .unwrap()
            .managed
            .push((client_id.to_owned(), oid.to_owned()));
    }

    /// The managed identity endpoint (IMDS's path on this server).
    pub fn imds_endpoint(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.base)
    }

    /// Registers an application `client_id` (principal `oid`) with a federated credential:
    /// assertions from `issuer` (signed by `key`) for `subject` prove it.
    pub fn add_federated_app(
        &self,
        client_id: &str,
        oid: &str,
        issuer: &str,
        subject: &str,
        key: Arc<SigningKey>,
    ) {
        let mut state = self.state.lock().unwrap();
        state.federation.insert(issuer.to_owned(), key);
        state.apps.insert(
            client_id.to_owned(),
            App {
                oid: oid.to_owned(),
                secret: None,
                federated: Some((issuer.to_owned(), subject.to_owned())),
            },
        );
    }
}

struct Ctx {
    tenant: String,
    base: String,
    state: Arc<Mutex<State>>,
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// An OAuth error answer (RFC 6749 section 5.2).
fn oauth_error(code: &str, description: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::BAD_REQUEST,
        &json!({"error": code, "error_description": description}),
    )
}

impl Ctx {
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let t = &self.tenant;
        let issuer = format!("{}/{t}/v2.0", self.base);
        if path == format!("/{t}/v2.0/.well-known/openid-configuration") {
            return respond(
                StatusCode::OK,
                &json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{}/{t}/discovery/v2.0/keys", self.base),
                    "token_endpoint": format!("{}/{t}/oauth2/v2.0/token", self.base),
                    "authorization_endpoint": format!("{}/{t}/oauth2/v2.0/authorize", self.base),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "subject_types_supported": ["pairwise"],
                    "tenant_region_scope": "NA",
                }),
            );
        }
        if path == format!("/{t}/discovery/v2.0/keys") {
            let mut state = self.state.lock().unwrap();
            state.jwks_fetches += 1;
            let keys: Vec<Value> = state.keys.iter().map(|k| k.jwk()).collect();
            return respond(StatusCode::OK, &json!({ "keys": keys }));
        }
        if path == format!("/{t}/oauth2/v2.0/token") && req.method() == http::Method::POST {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let Ok(body) = body else {
                return oauth_error("invalid_request", "unreadable body");
            };
            let form: HashMap<String, String> =
                share_hygiene::auth::parse_query(&String::from_utf8_lossy(&body))
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
            return self.token(&form, &issuer);
        }
        if path == "/metadata/identity/oauth2/token" && req.method() == http::Method::GET {
            let metadata = req.headers().get("metadata").is_some_and(|v| v == "true");
            let query: HashMap<String, String> =
                share_hygiene::auth::parse_query(req.uri().query().unwrap_or(""))
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
            return self.managed_identity_token(metadata, &query, &issuer);
        }
        respond(StatusCode::NOT_FOUND, &json!({"error": "not_found"}))
    }

    /// IMDS's answer: `expires_in` and `expires_on` as strings, as IMDS sends them.
    fn managed_identity_token(
        &self,
        metadata: bool,
        query: &HashMap<String, String>,
        issuer: &str,
    ) -> Response<Full<Bytes>> {
        if !metadata {
            return oauth_error("invalid_request", "Required metadata header not specified");
        }
        let Some(resource) = query.get("resource") else {
            return oauth_error(
                "invalid_request",
                "Required audience parameter not specified",
            );
        };
        let mut state = self.state.lock().unwrap();
        let identity = match query.get("client_id") {
            Some(id) => state.managed.iter().find(|(c, _)| c == id),
            None => state.managed.first(),
        };
        let Some((client_id, oid)) = identity.cloned() else {
            return oauth_error("invalid_request", "Identity not found");
        };
        let now = now();
        let claims = json!({
            "aud": format!("{}/", resource.trim_end_matches('/')),
            "iss": issuer,
            "tid": self.tenant,
            "oid": oid,
            "sub": oid,
            "appid": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        });
        let key = state.keys.last().unwrap().clone();
        state.tokens_issued += 1;
        drop(state);
        respond(
            StatusCode::OK,
            &json!({
                "access_token": key.sign(&claims),
                "client_id": client_id,
                "expires_in": "3600",
                "expires_on": (now + 3600).to_string(),
                "not_before": now.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        )
    }

    fn token(&self, form: &HashMap<String, String>, issuer: &str) -> Response<Full<Bytes>> {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        if field("grant_type") != "client_credentials" {
            return oauth_error("unsupported_grant_type", "only client_credentials");
        }
        let client_id = field("client_id");
        let mut state = self.state.lock().unwrap();
        let Some(app) = state.apps.get(client_id).cloned() else {
            return oauth_error("unauthorized_client", "no such application");
        };
        let proven = if let Some(secret) = form.get("client_secret") {
            app.secret.as_deref() == Some(secret.as_str())
        } else if field("client_assertion_type")
            == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        {
            let assertion = field("client_assertion");
            app.federated.as_ref().is_some_and(|(fed_issuer, subject)| {
                state
                    .federation
                    .get(fed_issuer)
                    .and_then(|key| key.verify(assertion))
                    .is_some_and(|c| {
                        c["iss"] == fed_issuer.as_str()
                            && c["sub"] == subject.as_str()
                            // Kubernetes writes `aud` as a list; a plain string is valid too.
                            && (c["aud"] == ASSERTION_AUDIENCE
                                || c["aud"]
                                    .as_array()
                                    .is_some_and(|a| a.iter().any(|x| x == ASSERTION_AUDIENCE)))
                            && c["exp"].as_i64().is_some_and(|exp| exp > now())
                    })
            })
        } else {
            false
        };
        if !proven {
            return oauth_error("invalid_client", "the client could not prove its identity");
        }
        let scope = field("scope");
        let Some(resource) = scope.strip_suffix("/.default") else {
            return oauth_error("invalid_scope", "scope must be RESOURCE/.default");
        };
        let now = now();
        let lifetime = state.token_lifetime;
        let claims = json!({
            "aud": format!("{resource}/"),
            "iss": issuer,
            "tid": self.tenant,
            "oid": app.oid,
            "sub": app.oid,
            "appid": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        });
        let key = state.keys.last().unwrap().clone();
        state.tokens_issued += 1;
        drop(state);
        respond(
            StatusCode::OK,
            &json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": key.sign(&claims),
            }),
        )
    }
}
