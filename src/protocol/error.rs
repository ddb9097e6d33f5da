//! Storage errors: the codes the handle APIs answer with, and the `Error` XML body.

use std::fmt;

use jiff::Timestamp;

use super::xml::{BOM_DECL, escape_text};

/// A storage error code, as sent in `x-ms-error-code` and `<Code>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 404: the share does not exist.
    ShareNotFound,
    /// 404: the file or directory does not exist.
    ResourceNotFound,
    /// 404: a parent directory of the path does not exist.
    ParentNotFound,
    /// 400: a query parameter has a bad value (`maxresults`, `marker`, `comp`, ...).
    InvalidQueryParameterValue,
    /// 400: a query parameter is out of its range.
    OutOfRangeQueryParameterValue,
    /// 400: a required query parameter is missing.
    MissingRequiredQueryParameter,
    /// 400: a header has a bad value.
    InvalidHeaderValue,
    /// 400: a required header is missing.
    MissingRequiredHeader,
    /// 400: the URI cannot be parsed.
    InvalidUri,
    /// 400: the request is malformed in another way.
    InvalidInput,
    /// 405: the verb does not fit the operation.
    UnsupportedHttpVerb,
    /// 413: the request body is too large.
    RequestBodyTooLarge,
    /// 403: the request is not authenticated.
    AuthenticationFailed,
    /// 403: the credential lacks the permission.
    AuthorizationPermissionMismatch,
    /// 403: the credential may not perform the operation.
    AuthorizationFailure,
    /// 400: the feature is not supported by this service.
    FeatureNotSupported,
    /// 503: throttled.
    ServerBusy,
    /// 500: the service failed.
    InternalError,
    /// 500: the operation timed out on the service.
    OperationTimedOut,
    /// Any other code a service sends.
    Other(String),
}

impl ErrorCode {
    /// The code's wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ShareNotFound => "ShareNotFound",
            Self::ResourceNotFound => "ResourceNotFound",
            Self::ParentNotFound => "ParentNotFound",
            Self::InvalidQueryParameterValue => "InvalidQueryParameterValue",
            Self::OutOfRangeQueryParameterValue => "OutOfRangeQueryParameterValue",
            Self::MissingRequiredQueryParameter => "MissingRequiredQueryParameter",
            Self::InvalidHeaderValue => "InvalidHeaderValue",
            Self::MissingRequiredHeader => "MissingRequiredHeader",
            Self::InvalidUri => "InvalidUri",
            Self::InvalidInput => "InvalidInput",
            Self::UnsupportedHttpVerb => "UnsupportedHttpVerb",
            Self::RequestBodyTooLarge => "RequestBodyTooLarge",
            Self::AuthenticationFailed => "AuthenticationFailed",
            Self::AuthorizationPermissionMismatch => "AuthorizationPermissionMismatch",
            Self::AuthorizationFailure => "AuthorizationFailure",
            Self::FeatureNotSupported => "FeatureNotSupported",
            Self::ServerBusy => "ServerBusy",
            Self::InternalError => "InternalError",
            Self::OperationTimedOut => "OperationTimedOut",
            Self::Other(s) => s,
        }
    }

    /// The code for a wire spelling.
    pub fn parse(s: &str) -> Self {
        const KNOWN: [ErrorCode; 19] = [
            ErrorCode::ShareNotFound,
            ErrorCode::ResourceNotFound,
            ErrorCode::ParentNotFound,
            ErrorCode::InvalidQueryParameterValue,
            ErrorCode::OutOfRangeQueryParameterValue,
            ErrorCode::MissingRequiredQueryParameter,
            ErrorCode::InvalidHeaderValue,
            ErrorCode::MissingRequiredHeader,
            ErrorCode::InvalidUri,
            ErrorCode::InvalidInput,
            ErrorCode::UnsupportedHttpVerb,
            ErrorCode::RequestBodyTooLarge,
            ErrorCode::AuthenticationFailed,
            ErrorCode::AuthorizationPermissionMismatch,
            ErrorCode::AuthorizationFailure,
            ErrorCode::FeatureNotSupported,
            ErrorCode::ServerBusy,
            ErrorCode::InternalError,
            ErrorCode::OperationTimedOut,
        ];
        KNOWN
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or_else(|| Self::Other(s.to_owned()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the service states it: HTTP status, code, message, and extra detail elements
/// (`HeaderName`, `QueryParameterName`, `AuthenticationErrorDetail`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct StorageError {
    /// The HTTP status.
    pub status: u16,
    /// The storage error code.
    pub code: ErrorCode,
    /// The message, without the `RequestId:` and `Time:` lines.
    pub message: String,
    /// Extra elements of the error body, in order.
    pub details: Vec<(String, String)>,
}

impl StorageError {
    /// An error with no details.
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds a detail element.
    pub fn with_detail(mut self, name: &str, value: impl Into<String>) -> Self {
        self.details.push((name.to_owned(), value.into()));
        self
    }

    /// The value of a detail element.
    pub fn detail(&self, name: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// 404 `ShareNotFound`.
    pub fn share_not_found() -> Self {
        Self::new(
            404,
            ErrorCode::ShareNotFound,
            "The specified share does not exist.",
        )
    }

    /// 404 `ResourceNotFound`.
    pub fn resource_not_found() -> Self {
        Self::new(
            404,
            ErrorCode::ResourceNotFound,
            "The specified resource does not exist.",
        )
    }

    /// 404 `ParentNotFound`.
    pub fn parent_not_found() -> Self {
        Self::new(
            404,
            ErrorCode::ParentNotFound,
            "The specified parent path does not exist.",
        )
    }

    /// 400 `InvalidQueryParameterValue` naming the parameter and its value.
    pub fn invalid_query(name: &str, value: &str, reason: &str) -> Self {
        Self::new(
            400,
            ErrorCode::InvalidQueryParameterValue,
            format!("Value for one of the query parameters specified in the request URI is invalid. {reason}"),
        )
        .with_detail("QueryParameterName", name)
        .with_detail("QueryParameterValue", value)
    }

    /// 400 `OutOfRangeQueryParameterValue` naming the parameter and its value.
    pub fn out_of_range_query(name: &str, value: &str, min: u32, max: u32) -> Self {
        Self::new(
            400,
            ErrorCode::OutOfRangeQueryParameterValue,
            "One of the query parameters specified in the request URI is outside the permissible range.",
        )
        .with_detail("QueryParameterName", name)
        .with_detail("QueryParameterValue", value)
        .with_detail("MinimumAllowed", min.to_string())
        .with_detail("MaximumAllowed", max.to_string())
    }

    /// 400 `InvalidHeaderValue` naming the header and its value.
    pub fn invalid_header(name: &str, value: &str, reason: &str) -> Self {
        Self::new(
            400,
            ErrorCode::InvalidHeaderValue,
            format!("The value for one of the HTTP headers is not in the correct format. {reason}"),
        )
        .with_detail("HeaderName", name)
        .with_detail("HeaderValue", value)
    }

    /// 400 `MissingRequiredHeader` naming the header.
    pub fn missing_header(name: &str) -> Self {
        Self::new(
            400,
            ErrorCode::MissingRequiredHeader,
            "An HTTP header that's mandatory for this request is not specified.",
        )
        .with_detail("HeaderName", name)
    }

    /// 403 `AuthenticationFailed` with the detail saying why.
    pub fn authentication_failed(detail: impl Into<String>) -> Self {
        Self::new(
            403,
            ErrorCode::AuthenticationFailed,
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
        )
        .with_detail("AuthenticationErrorDetail", detail)
    }

    /// 403 `AuthorizationPermissionMismatch`.
    pub fn permission_mismatch(detail: impl Into<String>) -> Self {
        Self::new(
            403,
            ErrorCode::AuthorizationPermissionMismatch,
            "This request is not authorized to perform this operation using this permission.",
        )
        .with_detail("AuthenticationErrorDetail", detail)
    }

    /// 500 `InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrorCode::InternalError, message)
    }

    /// Whether this error is worth retrying (throttling, timeouts, server errors).
    pub fn is_transient(&self) -> bool {
        matches!(self.status, 408 | 429 | 500 | 502 | 503 | 504)
    }
}

/// Encodes the `Error` body the service sends: BOM, declaration, `Code`, `Message` ending in
/// the `RequestId:` and `Time:` lines, then the details.
pub fn encode_error(err: &StorageError, request_id: &str, now: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + err.message.len());
    out.extend_from_slice(BOM_DECL);
    out.extend_from_slice(b"<Error><Code>");
    escape_text(&mut out, err.code.as_str());
    out.extend_from_slice(b"</Code><Message>");
    escape_text(&mut out, &err.message);
    let time = now.strftime("%Y-%m-%dT%H:%M:%S%.7fZ").to_string();
    escape_text(&mut out, &format!("\nRequestId:{request_id}\nTime:{time}"));
    out.extend_from_slice(b"</Message>");
    for (name, value) in &err.details {
        out.push(b'<');
        out.extend_from_slice(name.as_bytes());
        out.push(b'>');
        escape_text(&mut out, value);
        out.extend_from_slice(b"</");
        out.extend_from_slice(name.as_bytes());
        out.push(b'>');
    }
    out.extend_from_slice(b"</Error>");
    out
}

/// Strips the `RequestId:` and `Time:` lines the service appends to a message.
pub fn strip_message_trailer(message: &str) -> &str {
    let mut end = message.len();
    for marker in ["\nTime:", "\nRequestId:"] {
        if let Some(i) = message[..end].rfind(marker) {
            end = i;
        }
    }
    message[..end].trim_end()
}
