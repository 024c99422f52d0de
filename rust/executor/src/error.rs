//! Errors of the executor core. The PyO3 layer maps each variant once to a Python exception
//! defined in `azr.errors`, so Python callers catch ordinary, documented types.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExecError {
    /// The job itself is malformed (empty program, wrong kind of arguments).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A program, input or expected text exceeds `Limits::max_source_bytes`.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    SourceTooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// A limit is out of range.
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    /// The pool was used after `close()`.
    #[error("the executor is closed")]
    Closed,
    /// Workers could not be started at all.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, ExecError>;
