//! The leaf of the crate: types every other part shares and that depend on nothing else of redrive.
//!
//! - [`endpoint`]: a source or destination URL parsed once, with its redacted form.
//! - [`files`]: private directories, files opened without following symlinks, same-file checks.
//! - [`lock`]: one run at a time per DLQ.

pub mod endpoint;
pub mod files;
pub mod lock;

pub use endpoint::{Destination, Endpoint, EndpointError, Scheme};
pub use files::{FileError, FileIdentity};
pub use lock::{LockError, RunLock};
