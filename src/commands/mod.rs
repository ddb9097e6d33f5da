//! The subcommands of the `share-hygiene` binary.

pub mod connect;
pub mod controller;
pub mod crd;
pub mod handle_service;
pub mod handles;
pub mod samba_args;
pub mod sweep;
pub mod table;

use share_hygiene::handles::{Error as HandleError, ErrorCategory};

/// The process's exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything worked.
    Ok = 0,
    /// Any other error. (2, an invalid command line, comes from the argument parser.)
    Failure = 1,
    /// The service refused the credential.
    AuthenticationFailed = 3,
    /// The share or path does not exist.
    NotFound = 4,
    /// The command ran, but some handles could not be closed.
    SomeCloseFailed = 5,
    /// A sweep's safety valve tripped: it closed nothing.
    SafetyValve = 6,
}

/// The exit code for an error: by the handle error it wraps, if any.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    match err
        .chain()
        .find_map(|e| e.downcast_ref::<HandleError>())
        .map(HandleError::category)
    {
        Some(ErrorCategory::AuthenticationFailed) => ExitCode::AuthenticationFailed,
        Some(ErrorCategory::ShareNotFound | ErrorCategory::PathNotFound) => ExitCode::NotFound,
        _ => ExitCode::Failure,
    }
}
