//! One module per command; each exposes `run(args) -> Result<exit code>`.

pub mod filter_test;
pub mod run;
