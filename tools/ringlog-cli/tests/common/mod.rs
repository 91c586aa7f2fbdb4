//! Helpers shared by the integration tests: run the built `ringlog` binary, build logs
//! through the library, find and damage segment files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ringlog::{Log, Options};

/// Segment size of the logs the tests build: small, so they roll over often.
pub const SEGMENT_BYTES: u64 = 64 << 10;

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The `ringlog` binary under test.
pub fn ringlog_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringlog"))
}

/// Runs `ringlog ARGS` with empty stdin.
pub fn ringlog(args: &[&str]) -> Run {
    ringlog_with_stdin(args, b"")
}

/// Runs `ringlog ARGS` with `stdin` as its input.
pub fn ringlog_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = ringlog_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringlog");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for ringlog");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// A path as a `&str` argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The payload of record `i` in the tests' logs: 100 bytes of text naming `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let mut text = format!("record-{i:05}-");
    while text.len() < 100 {
        text.push('x');
    }
    text.into_bytes()
}

/// Builds a closed log of `records` records (see [`payload`]) with 64 KiB segments.
pub fn build_log(dir: &Path, records: u64) {
    let log = Log::open(dir, Options::default().segment_bytes(SEGMENT_BYTES)).expect("open");
    for i in 0..records {
        log.append(&payload(i)).expect("append");
    }
    log.close().expect("close");
}

/// Segment files in `dir`, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// The position just past the last non-zero byte of `file`, rounded up to 8.
pub fn data_end(file: &Path) -> u64 {
    let bytes = std::fs::read(file).expect("read segment");
    let last = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1) as u64;
    (last + 7) & !7
}

/// The active segment: the last file with data past its 64-byte header.
pub fn active_segment(dir: &Path) -> PathBuf {
    segment_files(dir)
        .into_iter()
        .rev()
        .find(|p| data_end(p) > 64)
        .expect("a segment with data")
}

/// Writes `garbage` bytes of 0x77 right after the active segment's data: a torn tail.
/// Returns the segment and the position of the garbage.
pub fn tear_tail(dir: &Path, garbage: usize) -> (PathBuf, u64) {
    let active = active_segment(dir);
    let end = data_end(&active);
    let mut bytes = std::fs::read(&active).expect("read");
    bytes[end as usize..end as usize + garbage].fill(0x77);
    std::fs::write(&active, &bytes).expect("write");
    (active, end)
}

/// Flips one bit at `position` of `file`.
pub fn flip_bit(file: &Path, position: usize) {
    let mut bytes = std::fs::read(file).expect("read");
    bytes[position] ^= 4;
    std::fs::write(file, &bytes).expect("write");
}

/// Every file of the log in `dir` with its contents, to prove a command changed nothing.
/// Not the lock file: whoever takes the lock (`repair`, even with `--dry-run`) writes
/// its pid there.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|path| !path.ends_with("ringlog.lock"))
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read file");
            (path, bytes)
        })
        .collect()
}

/// Parses every line of `text` as a JSON value.
pub fn ndjson(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Asserts a failed run printed exactly one `ringlog: error:` line, and returns it.
pub fn one_error_line(run: &Run, code: i32) -> String {
    assert_eq!(run.code, code, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(lines[0].starts_with("ringlog: error: "), "{run:?}");
    lines[0].to_string()
}
