//! The allocator's errors and the one place they become gRPC status codes.

/// Everything that can go wrong answering an allocator request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RPC is part of the contract but has no implementation in this build.
    #[error("{rpc} is not implemented by this allocator version")]
    NotImplemented {
        /// Name of the RPC, e.g. "ApplyConfig".
        rpc: &'static str,
    },
}

/// Result with the allocator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::NotImplemented { .. } => tonic::Status::unimplemented(message),
        }
    }
}
