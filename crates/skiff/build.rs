//! Builds skiff-init (init/init.rs) as a static executable with plain rustc, for
//! `skiff run --init`; skiff embeds it and installs it under the engine root.

// A build script reports failure by panicking: that is its error path.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let src = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("dir")).join("init/init.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "strip=symbols",
        ])
        .arg(&src)
        .arg("-o")
        .arg(out.join("skiff-init"))
        .status()
        .expect("running rustc for skiff-init");
    assert!(status.success(), "building skiff-init failed");
}
