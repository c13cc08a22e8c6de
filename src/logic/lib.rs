// SPDX-License-Identifier: GPL-2.0

//! Host crate root for mblit's pure logic, so that `cargo test` runs the
//! unit tests of the same files the kernel module includes as `mod logic`.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

#[path = "mod.rs"]
mod logic;

pub use logic::*;
