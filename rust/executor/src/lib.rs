//! azr's sandboxed Python executor.
//!
//! A pure-Rust core (`pool`, `zygote`, `sandbox`, `limits`, `protocol`, `value`, `outcome`) and,
//! behind the `python` feature, a thin PyO3 layer (`python`) that only converts arguments and
//! results and releases the GIL while the core works.

pub mod error;
pub mod fdpass;
pub mod limits;
pub mod outcome;
pub mod pool;
pub mod protocol;
pub mod sandbox;
pub mod supervisor;
pub mod value;
pub mod zygote;

#[cfg(feature = "python")]
mod python;

pub use error::{ExecError, Result};
pub use limits::Limits;
pub use outcome::{Outcome, Status};
pub use pool::{blobs_equal, Job, Pool, PoolConfig};
pub use value::Tolerance;
