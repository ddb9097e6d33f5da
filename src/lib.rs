//! share-hygiene keeps SMB file shares free of leaked handles.
//!
//! The modules follow one sweep's data flow (see `docs/architecture.md`):
//! [`protocol`] is the Azure Files handle protocol's wire model, [`auth`] signs and verifies
//! requests, [`handles`] holds the `HandleService` trait and its stores, and [`server`] serves
//! any store over HTTP exactly as Azure Files does.

pub mod api;
pub mod auth;
pub mod controller;
pub mod document;
pub mod duration;
pub mod glob;
pub mod handles;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod sweep;
pub mod telemetry;
pub mod text;

/// Installs ring as the process-wide rustls crypto provider. Idempotent. Every TLS client
/// of the binary (ours and kube's) uses the one provider, so rustls never has to guess.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
