// SPDX-License-Identifier: GPL-2.0

//! Pure logic of mblit: no kernel types, no allocation, safe code only.
//!
//! The kernel module includes this directory as `mod logic`; the host crate
//! in `src/logic/lib.rs` includes the same files for `cargo test`.

pub mod config_space;
pub mod desc;
pub mod mig;
pub mod region;
pub mod regs;
pub mod state;
pub mod types;
pub mod uapi;
