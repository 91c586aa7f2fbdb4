//! Bad arguments and library errors: a clear message and exit code 2.

mod common;

use common::{arg, build_log, one_error_line, ringlog};

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 9] = [
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["dump"], "required arguments were not provided"),
        (
            &["bench", "--record-size", "10XB"],
            "unknown size unit 'XB'",
        ),
        (&["bench", "--duration", "10"], "'10' needs a unit"),
        (
            &["bench", "--records", "5", "--duration", "1s"],
            "cannot be used with",
        ),
        (
            &["bench", "--durability", "fast"],
            "use sync, interval:DURATION",
        ),
        (&["bench", "--io", "aio"], "use auto, uring or pwrite"),
        (&["bench", "--producers", "0"], "invalid value '0'"),
        (&["tail", "somewhere", "-n", "many"], "invalid value 'many'"),
    ];
    for (args, expected) in cases {
        let run = ringlog(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
    }
}

#[test]
fn errors_on_the_log_are_one_line_with_a_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let line = one_error_line(&ringlog(&["info", arg(&missing)]), 2);
    assert!(
        line.contains("does not exist; pass the directory of an existing log"),
        "{line}"
    );

    let line = one_error_line(&ringlog(&["dump", arg(dir.path())]), 2);
    assert!(line.contains("holds no ringlog log"), "{line}");
    assert!(line.contains("`ringlog append"), "{line}");
    let line = one_error_line(&ringlog(&["verify", arg(dir.path())]), 2);
    assert!(line.contains("holds no ringlog log"), "{line}");

    let log = dir.path().join("log");
    build_log(&log, 5);
    let line = one_error_line(&ringlog(&["dump", arg(&log), "--from", "99"]), 2);
    assert!(
        line.contains("offset 99 is out of range: the log holds offsets 0..5"),
        "{line}"
    );
    assert!(line.contains("pick a --from offset"), "{line}");

    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 5 << 20]).unwrap();
    let line = one_error_line(&ringlog(&["append", arg(&log), "--file", arg(&big)]), 2);
    assert!(line.contains("exceeds the limit of"), "{line}");
    assert!(line.contains("use records of at most"), "{line}");
}

/// CPU time (user + system) of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 14th field
    // of the line, stime the 15th.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn tail_follow_with_a_zero_poll_interval_does_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    build_log(&dir.path().join("log"), 3);
    let log = dir.path().join("log");
    let mut tail = common::ringlog_command()
        .args(["tail", arg(&log), "-f", "--poll-interval", "0s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = cpu_ticks(tail.id());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let used = cpu_ticks(tail.id()) - before;
    tail.kill().unwrap();
    tail.wait().unwrap();
    // Clock ticks are 10 ms: a spinning loop takes most of the 150 in 1.5 s.
    assert!(
        used < 30,
        "tail -f --poll-interval 0s used {used} ticks of CPU in 1.5 s"
    );
}
