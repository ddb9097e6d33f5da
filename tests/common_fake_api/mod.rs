//! Shared by the controller process tests, the cluster tests and the controller benchmark:
//! a stateful fake Kubernetes API server ([`api`]), and helpers to run the real
//! `share-hygiene controller` binary and a handle service with leaked handles ([`process`]).
#![allow(dead_code)]

pub mod api;
pub mod process;
