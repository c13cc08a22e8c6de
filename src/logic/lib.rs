// SPDX-License-Identifier: GPL-2.0

//! Host crate root for mblit's pure logic, so that `cargo test` runs the
//! unit tests of the same files the kernel module includes as `mod logic`.

#![no_std]
#![forbid(unsafe_code)]
// The kernel is built with CONFIG_RUST_OVERFLOW_CHECKS: an arithmetic
// overflow is a panic. Every operation on values that can come from outside
// is checked (or wrapping where wrapping is the defined behaviour); the few
// bounded by construction carry a narrow `allow` with the bound.
#![deny(clippy::arithmetic_side_effects)]

#[cfg(test)]
extern crate std;

#[path = "mod.rs"]
mod logic;

pub use logic::*;
