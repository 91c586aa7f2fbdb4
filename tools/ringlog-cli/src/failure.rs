//! How failures reach the user: one line on stderr that says what went wrong and what to
//! do about it, and an exit code (1 when the log is damaged, 2 for usage and I/O errors).

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;

use ringlog::Error;

use crate::cmd::Target;

/// Exit code: the log is damaged (or `verify` found a problem).
pub const EXIT_DAMAGED: u8 = 1;
/// Exit code: bad usage, or an I/O or other operational error.
pub const EXIT_USAGE_OR_IO: u8 = 2;

/// A failed command: the one-line message and the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Print `message`, exit with `exit_code`.
    Message {
        /// One line: cause and remedy.
        message: String,
        /// Process exit code.
        exit_code: u8,
    },
    /// Stdout was closed by its reader (e.g. `| head`): stop quietly with success.
    StdoutClosed,
}

/// Result of a command.
pub type CliResult<T> = Result<T, Failure>;

impl Failure {
    /// A usage or I/O failure (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Message {
            message: one_line(&message.into()),
            exit_code: EXIT_USAGE_OR_IO,
        }
    }

    /// The command stopped on a signal (see [`crate::signals`]): exit 128 + its number.
    pub fn interrupted(stop: crate::signals::Stop, message: impl Into<String>) -> Failure {
        Failure::Message {
            message: one_line(&format!(
                "interrupted by {}: {}",
                stop.name(),
                message.into()
            )),
            exit_code: stop.exit_code(),
        }
    }

    /// A library error met while working on the log in `dir`, explained for the command
    /// line.
    pub fn from_log(error: Error, dir: &Path) -> Failure {
        Failure::from_target(error, &Target::new(dir, None))
    }

    /// A library error met while working on `target` (a log, or a store's topic),
    /// explained for the command line.
    pub fn from_target(error: Error, target: &Target<'_>) -> Failure {
        let exit_code = match error {
            Error::Corruption { .. } => EXIT_DAMAGED,
            _ => EXIT_USAGE_OR_IO,
        };
        Failure::Message {
            message: one_line(&explain(&error, target)),
            exit_code,
        }
    }

    /// The message, if the failure has one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Failure::Message { message, .. } => Some(message),
            Failure::StdoutClosed => None,
        }
    }

    /// An error writing to stdout: a closed pipe ends the command quietly.
    pub fn from_stdout(error: std::io::Error) -> Failure {
        if error.kind() == ErrorKind::BrokenPipe {
            Failure::StdoutClosed
        } else {
            Failure::usage(format!("cannot write to stdout: {error}"))
        }
    }

    /// Prints the message (if any) and turns the failure into the process exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Message { message, exit_code } => {
                eprintln!("ringlog: error: {message}");
                ExitCode::from(exit_code)
            }
            Failure::StdoutClosed => ExitCode::SUCCESS,
        }
    }
}

/// The library's message, with the remedy in command-line terms. `target` is how the
/// user named the log (`DIR` or `DIR --topic NAME`): remedies that are commands use it.
fn explain(error: &Error, target: &Target<'_>) -> String {
    let dir = target.dir.display();
    match error {
        Error::Io { source, .. } => {
            let remedy = match source.kind() {
                ErrorKind::NotFound => {
                    format!("check the path: {dir} must be an existing log directory")
                }
                ErrorKind::PermissionDenied => {
                    "check the file permissions, or run as the log's owner".to_string()
                }
                ErrorKind::StorageFull => "free some disk space and try again".to_string(),
                ErrorKind::NotADirectory => format!("{dir} must be a directory"),
                _ => "check the disk and the file system (dmesg), then try again".to_string(),
            };
            format!("{error}; {remedy}")
        }
        Error::Corruption {
            segment,
            position,
            reason,
            ..
        } => {
            let remedy = if error.is_torn_tail() {
                format!("run `ringlog repair {target}` to cut the torn tail")
            } else {
                format!(
                    "run `ringlog verify {target}` to list every problem; ringlog never skips damaged durable data, so restore that segment from a copy"
                )
            };
            format!(
                "corruption in {} at byte {position}: {reason}; {remedy}",
                segment.display()
            )
        }
        Error::NotALog { path } => format!(
            "{} holds no ringlog log (no .seg files); pass the directory of an existing log (`ringlog append {dir}` creates one)",
            path.display()
        ),
        Error::InvalidOptions(why) if why.contains("io_uring cannot be used") => {
            format!("{why}; use --io auto (falls back to pwritev) or --io pwrite")
        }
        Error::InvalidOptions(why) if why.contains("exists with other options") => {
            let why = why.split("; open it with").next().unwrap_or(why);
            format!("{why}; drop --segment-size to append with them")
        }
        Error::Locked { path } => format!(
            "{} is locked by another writer{}; stop that writer first (read-only commands work beside it)",
            path.display(),
            match ringlog::lock_holder(path) {
                Ok(Some(pid)) => format!(" (pid {pid})"),
                _ => String::new(),
            }
        ),
        Error::RecordTooLarge {
            record_bytes,
            max_record_bytes,
        } => format!(
            "record of {record_bytes} bytes exceeds the limit of {max_record_bytes} bytes; use records of at most {max_record_bytes} bytes"
        ),
        Error::OffsetOutOfRange { .. } => {
            format!("{error}; pick a --from offset in that range (`ringlog info {target}`)")
        }
        Error::InvalidOptions(why) => format!("invalid options: {why}; change the flag"),
        Error::WrongKind { path, .. } if target.topic.is_some() => format!(
            "{} is not a store of topics (no ringlog.store in it); check the path, or drop --topic to use a single log",
            path.display()
        ),
        // `InvalidTopic` (the library's reason) and `UnknownTopic` (with the command
        // that lists the topics) say it all.
        other => other.to_string(),
    }
}

/// Joins a message onto one line.
fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}
