// SPDX-License-Identifier: GPL-2.0

//! Property and fuzz tests of mblit's decoders, on the host (fuzz/README.md).
//!
//! Tool: proptest (a dev-dependency only). It runs on stable Rust (the
//! toolchain the project builds with; cargo-fuzz/libFuzzer need nightly), it
//! generates structured inputs from composable strategies (records, edits,
//! register accesses), it shrinks a failure to a minimal case, and its
//! failure persistence saves the seed of every failing case to a file that
//! later runs replay first: `fuzz/regressions/`, committed with the tests.
//! `make fuzz` drives the same strategies and checks through proptest's
//! `TestRunner` for millions of executions (fuzz_state.rs).
//!
//! - `model`: the format, register map and rules typed in again from the
//!   documents, raw record models and the generators;
//! - `stream`: a host-side stream receiver parsing as the driver's
//!   ResumeStream does;
//! - `check`: the state-format properties as functions of an input;
//! - `state_props`, `desc_props`, `regs_props`: the property tests;
//! - `fuzz_state`: the `make fuzz` driver, its bounded `cargo test` part and
//!   the replay of saved failing inputs.

/// The persistence file `fuzz/regressions/<name>`.
#[macro_export]
macro_rules! regressions {
    ($name:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions/", $name)
    };
}

mod check;
mod desc_props;
mod fuzz_state;
mod model;
mod regs_props;
mod state_props;
mod stream;

use proptest::test_runner::{Config, FileFailurePersistence};

/// A proptest configuration: `cases` cases (`PROPTEST_CASES` overrides
/// it), failing seeds saved to and replayed from `file`.
pub fn config(cases: u32, file: &'static str) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}
