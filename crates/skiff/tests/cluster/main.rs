//! The cluster on one node: `skiff server` with its in-process node agent and
//! scheduler, driven by the real kubectl. Pods run for real on the engine. One test
//! binary (its tests run in parallel, as before), its tests by area; the `Cluster`
//! fixture is `skiff_testsupport::cluster`'s.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ha;
mod hollow;
mod nodes;
mod objects;
mod podnet;
mod pods;
mod pulls;
mod services;
mod streaming;
mod workloads;

const EXE: &str = env!("CARGO_BIN_EXE_skiff");
