// SPDX-License-Identifier: GPL-2.0

//! The golden device states of `selftests/golden/v<N>/` (docs/migration.md
//! §1.8, §1.9), decoded on the host with the decoders the module compiles.
//!
//! Every fixture of every version must decode, as a v2 stream and as a
//! DEVICE_STATE region state, to exactly what its `.expect` description
//! says (the format of `selftests/lib/mblit_golden.h`): every register, the
//! config space, the error counter, the INTx mask and every page. The same
//! records with their version raised past [`state::FORMAT_VERSION`] are
//! refused as newer. A build that bumps the format keeps these passing for
//! every older directory: that is the promise that older streams resume.
//! Registers newer than a fixture (`since` above its version) are not in
//! it and must decode as their reset values.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use mblit_logic::regs::REGS;
use mblit_logic::state::{self, DeviceState, RecordKind, StateError, PAGE};

/// One page's pattern in a description.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// One repeated little-endian 32-bit word.
    Fill32(u32),
    /// Byte k is `(first + k) & 0xff`.
    Ramp(u8),
}

impl Pattern {
    fn bytes(self) -> Vec<u8> {
        (0..PAGE)
            .map(|k| match self {
                Pattern::Fill32(w) => w.to_le_bytes()[k % 4],
                Pattern::Ramp(first) => first.wrapping_add(k as u8),
            })
            .collect()
    }
}

/// A parsed `.expect` file.
#[derive(Debug, Default)]
struct Expect {
    version: u32,
    type_name: String,
    vram_size: u64,
    regs: BTreeMap<String, u64>,
    config: Vec<u8>,
    errors: u64,
    intx_masked: bool,
    pages: BTreeMap<u64, Pattern>,
}

fn num(s: &str) -> u64 {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.unwrap_or_else(|e| panic!("not a number: {s}: {e}"))
}

fn parse_expect(path: &Path) -> Expect {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut x = Expect::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [] => {}
            ["version", v] => x.version = num(v) as u32,
            ["type", t] => x.type_name = t.to_string(),
            ["vram_size", v] => x.vram_size = num(v),
            ["errors", v] => x.errors = num(v),
            ["intx_masked", v] => x.intx_masked = num(v) != 0,
            ["reg", name, v] => {
                x.regs.insert(name.to_string(), num(v));
            }
            ["config", hex] => {
                x.config = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
            }
            ["page", i, "fill32", v] => {
                x.pages.insert(num(i), Pattern::Fill32(num(v) as u32));
            }
            ["page", i, "ramp", v] => {
                x.pages.insert(num(i), Pattern::Ramp(num(v) as u8));
            }
            _ => panic!("{}: cannot parse {line:?}", path.display()),
        }
    }
    assert!(x.version >= 1, "{}: no version", path.display());
    assert_eq!(x.config.len(), 256, "{}: config", path.display());
    x
}

/// Every `(directory version, path of the .expect)` under selftests/golden.
fn fixtures() -> Vec<(u32, PathBuf)> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("selftests/golden");
    let mut out = Vec::new();
    for v in fs::read_dir(&top).unwrap_or_else(|e| panic!("{}: {e}", top.display())) {
        let v = v.unwrap().path();
        let Some(n) = v
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('v'))
        else {
            continue;
        };
        let version: u32 = n.parse().expect("golden/v<N>");
        for f in fs::read_dir(&v).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "expect") {
                out.push((version, f));
            }
        }
    }
    assert!(!out.is_empty(), "no golden fixtures in {}", top.display());
    out.sort();
    out
}

/// Compares a decoded state and its pages with the description.
fn check(what: &str, x: &Expect, s: &DeviceState, pages: &BTreeMap<u64, Vec<u8>>) {
    assert_eq!(s.vram_size, x.vram_size, "{what}: vram_size");
    for info in REGS.iter() {
        // A register that joined the format after the fixture's version is
        // not in its description, nor in its records: it decodes as its
        // reset value.
        let want = if info.since > x.version {
            assert!(!x.regs.contains_key(info.name), "{what}: {}", info.name);
            Some(info.reset)
        } else {
            x.regs.get(info.name).copied()
        };
        assert_eq!(
            Some(s.regs[info.reg as usize]),
            want,
            "{what}: register {}",
            info.name
        );
    }
    let carried = REGS.iter().filter(|r| r.since <= x.version).count();
    assert_eq!(x.regs.len(), carried, "{what}: registers described");
    assert_eq!(&s.config[..], &x.config[..], "{what}: config space");
    assert_eq!(s.errors, x.errors, "{what}: error counter");
    assert_eq!(s.intx_masked, x.intx_masked, "{what}: INTx mask");
    let nonzero: Vec<u64> = pages
        .iter()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(&i, _)| i)
        .collect();
    let described: Vec<u64> = x.pages.keys().copied().collect();
    assert_eq!(nonzero, described, "{what}: the non-zero pages");
    for (i, pat) in &x.pages {
        assert!(pages[i] == pat.bytes(), "{what}: page {i} is not {pat:?}");
    }
}

fn type_id(x: &Expect) -> u32 {
    (x.vram_size >> 20) as u32
}

/// Decodes a v2 stream: pages records then one device record, last.
fn decode_stream(bytes: &[u8], x: &Expect) -> (DeviceState, BTreeMap<u64, Vec<u8>>) {
    let (tid, vram) = (type_id(x), x.vram_size);
    let mut pages = BTreeMap::new();
    let mut rest = bytes;
    let mut device = None;
    while !rest.is_empty() {
        assert!(device.is_none(), "bytes after the device record");
        let info = state::peek_record(rest, tid, vram).expect("record header");
        let (rec, tail) = rest.split_at(info.len);
        match info.kind {
            RecordKind::Pages => {
                let chunk = state::decode_pages_chunk(rec, tid, vram).expect("pages record");
                for (i, p) in chunk.pages() {
                    pages.insert(i, p.to_vec());
                }
            }
            RecordKind::Device => {
                let d = state::decode(rec, tid, vram).expect("device record");
                for (i, p) in d.pages() {
                    pages.insert(i, p.to_vec());
                }
                device = Some(d.state);
            }
        }
        rest = tail;
    }
    (device.expect("no device record"), pages)
}

fn read(expect: &Path, ext: &str) -> Vec<u8> {
    let p = expect.with_extension(ext);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn golden_streams_of_every_version_decode_to_their_description() {
    for (dir_version, path) in fixtures() {
        let x = parse_expect(&path);
        assert_eq!(x.version, dir_version, "{}", path.display());
        assert!(
            (state::OLDEST_VERSION..=state::FORMAT_VERSION).contains(&x.version),
            "{}: version {} is no longer read (OLDEST_VERSION {})",
            path.display(),
            x.version,
            state::OLDEST_VERSION
        );
        assert_eq!(
            x.type_name,
            format!("mblit-{}m", type_id(&x)),
            "{}: type name and device memory size",
            path.display()
        );
        let what = format!("{} (stream)", path.display());
        let (s, pages) = decode_stream(&read(&path, "stream"), &x);
        check(&what, &x, &s, &pages);

        let what = format!("{} (region)", path.display());
        let region = read(&path, "region");
        let d = state::decode(&region, type_id(&x), x.vram_size).expect("region state");
        let pages = d.pages().map(|(i, p)| (i, p.to_vec())).collect();
        check(&what, &x, &d.state, &pages);
    }
}

/// Raises the version of the record at the start of `rec` past this
/// build's, CRC fixed: it must be refused as newer, naming the version.
fn newer(rec: &[u8]) -> Vec<u8> {
    let mut v = rec.to_vec();
    let len = v.len();
    v[4..8].copy_from_slice(&(state::FORMAT_VERSION + 1).to_le_bytes());
    let crc = state::crc32(&v[..len - 4]);
    v[len - 4..].copy_from_slice(&crc.to_le_bytes());
    v
}

#[test]
fn golden_records_of_a_newer_version_are_refused_as_newer() {
    let want = Err(StateError::NewerVersion(state::FORMAT_VERSION + 1));
    for (_, path) in fixtures() {
        let x = parse_expect(&path);
        let (tid, vram) = (type_id(&x), x.vram_size);
        let region = newer(&read(&path, "region"));
        assert_eq!(state::decode(&region, tid, vram).map(|_| ()), want);
        assert_eq!(state::peek_record(&region, tid, vram).map(|_| ()), want);
        let stream = read(&path, "stream");
        let first = state::peek_record(&stream, tid, vram).unwrap();
        let rec = newer(&stream[..first.len]);
        assert_eq!(state::peek_record(&rec, tid, vram).map(|_| ()), want);
    }
}
