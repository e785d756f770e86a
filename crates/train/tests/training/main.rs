//! The training loop's integration tests in one test binary: each file was
//! its own, and each linked (and monomorphized) the library stack again,
//! about 15 s of a first `cargo test --workspace` apiece on two cores. The
//! no-allocation test stays apart: its counting allocator is the process's.

#[path = "../common/mod.rs"]
mod common;

mod checkpoint_fuzz;
mod mnist_golden;
mod synthetic;
