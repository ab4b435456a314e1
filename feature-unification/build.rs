//! Empty on purpose: a crate's `[build-dependencies]` are only compiled, and so only unify features, when it has
//! a build script. See Cargo.toml.
fn main() {}
