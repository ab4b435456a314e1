//! No code. This crate only lists, in its Cargo.toml, the crate features that building redrive with every broker
//! turns on, so that a build without the brokers compiles those shared crates the same way and building the
//! brokers in later recompiles nothing but them. See the comment at the top of Cargo.toml.
