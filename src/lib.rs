//! share-hygiene keeps SMB file shares free of leaked handles.
//!
//! The modules follow one sweep's data flow (see `docs/architecture.md`):
//! [`protocol`] is the Azure Files handle protocol's wire model, [`auth`] signs and verifies
//! requests, [`handles`] holds the `HandleService` trait and its stores, and [`server`] serves
//! any store over HTTP exactly as Azure Files does.

pub mod auth;
pub mod duration;
pub mod handles;
pub mod protocol;
pub mod server;
pub mod telemetry;
