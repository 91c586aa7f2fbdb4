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
