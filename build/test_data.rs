//! Build script shared by the crates whose tests read real data sets.
//!
//! Tests that need MNIST are marked
//! `#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]`: where
//! `MNIST_DIR` is unset they show as *ignored* in `cargo test`'s summary
//! (never as passing), and where it is set (CI) they run and fail on bad
//! data. The same for Fashion-MNIST and `FASHION_MNIST_DIR`. Cargo rebuilds
//! the tests when either variable changes.

fn main() {
    for (var, cfg) in [("MNIST_DIR", "mnist_data"), ("FASHION_MNIST_DIR", "fashion_data")] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
