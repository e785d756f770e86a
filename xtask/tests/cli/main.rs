//! The commands as a person runs them, in one test binary: each file was
//! its own, and each linked (and monomorphized) the library stack again,
//! 14-16 s of a first `cargo test --workspace` apiece on two cores.

#[path = "../common/mod.rs"]
mod common;

mod checkpoint_cli;
mod commands;
mod gradcheck_cli;
mod serve_cli;
mod writes_cli;
