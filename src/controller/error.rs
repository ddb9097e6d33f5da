//! The controller's errors, each in one of a small fixed set of categories (Event reasons and
//! metric labels).

/// Why a reconcile failed (share failures are not errors: they are part of the report).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace or name.
    #[error("the HandlePolicy has no {0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// The error's category.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesApiError",
            Self::MissingMetadata(_) => "InvalidObject",
        }
    }
}
