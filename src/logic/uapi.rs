// SPDX-License-Identifier: GPL-2.0

//! The constants mblit shares with C, and the check that keeps
//! `include/uapi/linux/mblit.h` equal to them.
//!
//! The Rust modules are the one source. Each of them declares its shared
//! constants through the `uapi_consts!` macro, which also records every such
//! constant, under its C name (`MBLIT_` followed by the Rust name), in that
//! module's `UAPI` table. [`TABLES`] collects the tables. A host unit test
//! reads the header and fails unless every `#define MBLIT_*` in it is in a
//! table with the same value and every table entry is defined in the header.

#[cfg(test)]
use super::{config_space, desc, region, regs};

/// Declares `pub const` items and a table `$table` of `(C name, value)`
/// pairs listing all of them, the C name being `MBLIT_<name>`.
macro_rules! uapi_consts {
    (
        $(#[$tmeta:meta])*
        table $table:ident;
        $(
            $(#[$meta:meta])*
            pub const $name:ident: $ty:ty = $value:expr;
        )*
    ) => {
        $(
            $(#[$meta])*
            pub const $name: $ty = $value;
        )*

        $(#[$tmeta])*
        #[cfg(test)]
        #[allow(clippy::unnecessary_cast, clippy::cast_lossless)]
        pub const $table: &[(&str, u64)] = &[
            $( (concat!("MBLIT_", stringify!($name)), $name as u64), )*
        ];
    };
}
pub(crate) use uapi_consts;

/// Declares a `#[repr(u8)]` enum of codes shared with C (each variant's
/// value one of the module's `uapi_consts!`), with everything a code
/// needs generated from the one list: `ALL` (every variant, in
/// declaration order), `code()` and `TryFrom<u8>` (whose error is the
/// unknown code). A new variant is then known to the decoder without
/// another edit, and every `match` on the enum must handle it.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),*].len()] = [$($name::$variant),*];

            /// The numeric code.
            pub const fn code(self) -> u8 {
                self as u8
            }
        }

        impl TryFrom<u8> for $name {
            /// The unknown code.
            type Error = u8;

            fn try_from(code: u8) -> Result<Self, u8> {
                Self::ALL.into_iter().find(|v| v.code() == code).ok_or(code)
            }
        }
    };
}
pub(crate) use code_enum;

/// Every table of constants shared with C, one per module.
#[cfg(test)]
pub const TABLES: &[&[(&str, u64)]] = &[
    config_space::UAPI,
    regs::UAPI,
    regs::UAPI_VALUES,
    desc::UAPI,
    region::UAPI,
];

/// Looks a shared constant up by its C name.
#[cfg(test)]
pub fn lookup(c_name: &str) -> Option<u64> {
    TABLES
        .iter()
        .flat_map(|t| t.iter())
        .find(|(n, _)| *n == c_name)
        .map(|&(_, v)| v)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::{collections::BTreeMap, format, string::String, vec::Vec};

    const HEADER: &str = include_str!("../../include/uapi/linux/mblit.h");

    /// Parses a C integer literal: decimal or `0x` hex, optionally in
    /// parentheses, with an optional `U`/`UL`/`ULL` suffix.
    fn parse_literal(s: &str) -> Option<u64> {
        let mut s = s.trim();
        if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            s = inner.trim();
        }
        let s = s.trim_end_matches(['u', 'U', 'l', 'L']);
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).ok()
        } else if s.len() > 1 && s.starts_with('0') {
            None // octal: not used, so not accepted
        } else {
            s.parse().ok()
        }
    }

    /// The `#define MBLIT_*` object-like macros of the header, by name.
    fn header_defines() -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (n, line) in HEADER.lines().enumerate() {
            let line = line.trim_start();
            let Some(rest) = line.strip_prefix("#define") else {
                continue;
            };
            let rest = rest.trim_start();
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, tail) = rest.split_at(name_end);
            if !name.starts_with("MBLIT_") || tail.starts_with('(') {
                // The include guard, and function-like helper macros.
                continue;
            }
            // Drop a trailing comment.
            let value = tail.split("/*").next().unwrap_or("").trim();
            let value = parse_literal(value).unwrap_or_else(|| {
                panic!(
                    "mblit.h:{}: {name}: value {value:?} is not a plain literal",
                    n + 1
                )
            });
            assert!(
                out.insert(String::from(name), value).is_none(),
                "mblit.h:{}: {name} defined twice",
                n + 1
            );
        }
        out
    }

    #[test]
    fn literal_parser() {
        assert_eq!(parse_literal("0x10"), Some(16));
        assert_eq!(parse_literal("(0x80006d62U)"), Some(0x8000_6d62));
        assert_eq!(parse_literal("4096"), Some(4096));
        assert_eq!(parse_literal("0"), Some(0));
        assert_eq!(parse_literal("0x100000ULL"), Some(0x10_0000));
        assert_eq!(parse_literal("(1 << 3)"), None);
        assert_eq!(parse_literal("010"), None);
        assert_eq!(parse_literal("FOO"), None);
    }

    #[test]
    fn rust_names_are_unique() {
        let mut seen = BTreeMap::new();
        for &(name, value) in TABLES.iter().flat_map(|t| t.iter()) {
            assert!(seen.insert(name, value).is_none(), "{name} twice in Rust");
        }
    }

    #[test]
    fn every_header_define_matches_rust() {
        let defines = header_defines();
        assert!(defines.len() > 50, "parsed only {} defines", defines.len());
        let mut bad = Vec::new();
        for (name, &value) in &defines {
            match lookup(name) {
                Some(v) if v == value => {}
                Some(v) => bad.push(format!("{name}: header {value:#x}, Rust {v:#x}")),
                None => bad.push(format!("{name}: in the header, not in Rust")),
            }
        }
        assert!(bad.is_empty(), "header and Rust disagree:\n{bad:#?}");
    }

    #[test]
    fn every_rust_constant_is_in_the_header() {
        let defines = header_defines();
        let missing: Vec<_> = TABLES
            .iter()
            .flat_map(|t| t.iter())
            .filter(|(n, _)| !defines.contains_key(*n))
            .map(|(n, v)| format!("#define {n} {v:#x}"))
            .collect();
        assert!(missing.is_empty(), "missing from mblit.h:\n{missing:#?}");
    }

    #[test]
    fn header_shape() {
        assert!(
            HEADER.starts_with("/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */")
        );
        assert!(HEADER.contains("#ifndef _UAPI_LINUX_MBLIT_H"));
        assert!(HEADER.contains("#define _UAPI_LINUX_MBLIT_H"));
        assert!(HEADER.contains("#include <linux/types.h>"));
        assert!(HEADER.contains("struct mblit_desc {"));
        assert!(HEADER
            .trim_end()
            .ends_with("#endif /* _UAPI_LINUX_MBLIT_H */"));
    }

    #[test]
    fn header_struct_matches_descriptor_offsets() {
        // The struct's members, in order, with their sizes; the offsets
        // follow from natural alignment with no padding.
        let start = HEADER.find("struct mblit_desc {").unwrap();
        let body = &HEADER[start..];
        let body = &body[..body.find("};").unwrap()];
        let mut off = 0u64;
        let mut fields = Vec::new();
        for line in body.lines().skip(1) {
            let line = line.split("/*").next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            let mut it = line.trim_end_matches(';').split_whitespace();
            let ty = it.next().unwrap();
            let name = it.next().unwrap();
            let size = match ty {
                "__u8" => 1,
                "__u16" => 2,
                "__u32" => 4,
                "__u64" => 8,
                _ => panic!("unexpected member type {ty}"),
            };
            assert_eq!(off % size, 0, "{name} misaligned");
            fields.push((String::from(name), off));
            off += size;
        }
        assert_eq!(off, u64::from(desc::DESC_SIZE));
        let expect = [
            ("opcode", desc::DESC_OFF_OPCODE),
            ("flags", desc::DESC_OFF_FLAGS),
            ("rsvd0", desc::DESC_OFF_RSVD0),
            ("len", desc::DESC_OFF_LEN),
            ("dst", desc::DESC_OFF_DST),
            ("src", desc::DESC_OFF_SRC),
            ("rsvd1", desc::DESC_OFF_RSVD1),
        ];
        assert_eq!(fields.len(), expect.len());
        for ((name, off), (ename, eoff)) in fields.iter().zip(expect) {
            assert_eq!(name, ename);
            assert_eq!(*off, u64::from(eoff), "{name}");
        }
    }
}
