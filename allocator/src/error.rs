//! The allocator's errors and the one place they become gRPC status codes.

/// Everything that can go wrong answering an allocator request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a required field is missing or unparseable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The allocator cannot answer this yet: it has not had the watcher's first full sync, and
    /// allocating from a partial picture could hand out an IP a service already holds.
    #[error("{0} is refused until the first full sync of services (SyncServices) is done")]
    NotSynced(&'static str),
    /// The request is over one of the limits (`limits`).
    #[error("{0}")]
    TooLarge(String),
    /// The caller may not act for what the request names (another node).
    #[error("{0}")]
    PermissionDenied(String),
}

/// Result with the allocator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::NotSynced(_) => tonic::Status::failed_precondition(message),
            Error::TooLarge(_) => tonic::Status::resource_exhausted(message),
            Error::PermissionDenied(_) => tonic::Status::permission_denied(message),
        }
    }
}
