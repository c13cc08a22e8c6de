// SPDX-License-Identifier: GPL-2.0

//! The state-decoder fuzzer behind `make fuzz`, and what `cargo test` runs
//! of it.
//!
//! One execution is one generated stream (`model::stream_spec`: one to four
//! records of both kinds, field edits, foreign records, byte mutations of
//! records and of the whole stream, random write sizes) put through every
//! state decoder entry point and the host stream receiver, with the checks
//! of `check::stream_case`.
//!
//! `make fuzz` runs the ignored test `fuzz_state_decoder` in the `fuzz`
//! profile (optimised, overflow checks and debug assertions on), in one
//! thread per core, in batches of `BATCH` cases: each batch is a proptest
//! `TestRunner` seeded from `FUZZ_SEED`, the thread and the batch number,
//! so a run is replayable. A failing case is shrunk by proptest, and saved
//! twice in `fuzz/regressions/`:
//!
//! - its seed, in `state-fuzz.txt` (proptest's failure persistence): the
//!   bounded test `state_fuzz_cases` below replays every seed there first,
//!   on every `cargo test`, as long as the generator is unchanged;
//! - its bytes, as `stream-t<type>-v<vram size>-<crc>.bin`:
//!   `saved_inputs_pass` runs the generator-independent checks on every
//!   such file on every `cargo test`, whatever becomes of the generator.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use mblit_logic::state::crc32;
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestError, TestRng, TestRunner,
};

use crate::check::{saved_input, stream_case};
use crate::config;
use crate::model::{mix, stream_spec, StreamSpec};

/// Seeds of failing cases (proptest's persistence file).
const SEEDS: &str = regressions!("state-fuzz.txt");
/// Where failing inputs are saved.
const INPUTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions");
/// Cases per runner.
const BATCH: u32 = 25_000;
/// Default execution count of `make fuzz`.
const DEFAULT_EXECS: u64 = 10_000_000;

proptest! {
    #![proptest_config(config(1500, SEEDS))]

    /// The fuzz case, a bounded number of times, after the seeds of every
    /// failure `make fuzz` found.
    #[test]
    fn state_fuzz_cases(spec in stream_spec()) {
        stream_case(&spec)?;
    }
}

/// Every failing input `make fuzz` saved still passes.
#[test]
fn saved_inputs_pass() {
    let mut n = 0;
    for e in fs::read_dir(INPUTS).expect("fuzz/regressions") {
        let path = e.unwrap().path();
        let Some((type_id, vram_size)) = parse_name(&path) else {
            continue;
        };
        let bytes = fs::read(&path).unwrap();
        if let Err(e) = saved_input(&bytes, type_id, vram_size) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    println!("{n} saved inputs");
}

/// `stream-t<type>-v<vram>-<crc>.bin` → `(type, vram)`.
fn parse_name(path: &Path) -> Option<(u32, u64)> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix("stream-t")?.strip_suffix(".bin")?;
    let mut it = rest.split('-');
    let t = it.next()?.parse().ok()?;
    let v = it.next()?.strip_prefix('v')?.parse().ok()?;
    Some((t, v))
}

fn save_input(spec: &StreamSpec) -> String {
    let b = spec.build();
    let (t, v) = b.geo;
    let path = format!("{INPUTS}/stream-t{t}-v{v}-{:08x}.bin", crc32(&b.bytes));
    fs::write(&path, &b.bytes).expect("saving the failing input");
    path
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let n = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(n.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// What the threads share.
struct Shared {
    seed: u64,
    /// Cases per thread, or none for a time-bounded run.
    quota: Option<u64>,
    deadline: Option<Instant>,
    execs: AtomicU64,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
}

fn worker(sh: &Shared, thread: u64) {
    let strategy = stream_spec();
    let mut started = 0u64;
    for batch in 0u64.. {
        if sh.stop.load(Ordering::Relaxed) || sh.deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let cases = match sh.quota {
            Some(q) if started >= q => return,
            Some(q) => (q - started).min(u64::from(BATCH)) as u32,
            None => BATCH,
        };
        started += u64::from(cases);
        let cfg = Config {
            cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(SEEDS))),
            max_shrink_time: 120_000,
            ..Config::default()
        };
        let s = mix(sh.seed ^ mix(thread << 32 | batch));
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&s.to_le_bytes());
        key[8..].copy_from_slice(&mix(s).to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::XorShift, &key);
        let mut runner = TestRunner::new_with_rng(cfg, rng);
        let result = runner.run(&strategy, |spec| {
            sh.execs.fetch_add(1, Ordering::Relaxed);
            stream_case(&spec)
        });
        let msg = match result {
            Ok(()) => continue,
            Err(TestError::Fail(reason, spec)) => {
                let path = save_input(&spec);
                format!(
                    "thread {thread}, batch {batch}: {reason}\nminimal case: {spec:#?}\n\
                     saved: {path} and its seed in {SEEDS}"
                )
            }
            Err(TestError::Abort(reason)) => format!("thread {thread}, batch {batch}: {reason}"),
        };
        sh.stop.store(true, Ordering::Relaxed);
        sh.failure.lock().unwrap().get_or_insert(msg);
        return;
    }
}

/// `make fuzz`: `FUZZ_EXECS` executions (default 10 million), or
/// `DURATION` seconds; `FUZZ_SEED` and `FUZZ_THREADS` to replay a run.
#[test]
#[ignore = "make fuzz"]
fn fuzz_state_decoder() {
    let threads = env_u64("FUZZ_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
        .max(1);
    let duration = env_u64("DURATION").map(Duration::from_secs);
    let total = env_u64("FUZZ_EXECS").unwrap_or(DEFAULT_EXECS);
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        mix(t.as_nanos() as u64)
    });
    let start = Instant::now();
    let sh = Shared {
        seed,
        quota: match duration {
            Some(_) => None,
            None => Some(total.div_ceil(threads)),
        },
        deadline: duration.map(|d| start + d),
        execs: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
    };
    match duration {
        Some(d) => println!("fuzz: state decoder for {} s", d.as_secs()),
        None => println!(
            "fuzz: state decoder, {} executions",
            threads * sh.quota.unwrap()
        ),
    }
    println!(
        "fuzz: seed {seed:#x}, {threads} threads (replay: make fuzz FUZZ_SEED={seed:#x} \
         FUZZ_THREADS={threads})"
    );
    std::thread::scope(|s| {
        let sh = &sh;
        let workers: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || worker(sh, t)))
            .collect();
        let mut last = Instant::now();
        while !workers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                let n = sh.execs.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "fuzz: {n} executions, {secs:.0} s, {:.0} exec/s",
                    n as f64 / secs
                );
            }
        }
        for w in workers {
            if let Err(e) = w.join() {
                // A panic outside a test case: in the fuzzer itself.
                sh.stop.store(true, Ordering::Relaxed);
                std::panic::resume_unwind(e);
            }
        }
    });
    let n = sh.execs.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz: done: {n} executions in {secs:.1} s, {:.0} exec/s ({threads} threads)",
        n as f64 / secs
    );
    if let Some(msg) = sh.failure.into_inner().unwrap() {
        panic!("fuzz: FAILED, {msg}");
    }
}
