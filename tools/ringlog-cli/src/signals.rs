//! SIGINT and SIGTERM as a flag the commands poll, so that `append` and `bench` can stop,
//! make durable what they started, report, clean up and exit 128 + the signal number,
//! instead of dying mid-run.
//!
//! The handler only stores the signal number (async-signal-safe). It is installed without
//! `SA_RESTART`, so a `read` of the input blocked in the main thread returns `EINTR`, and
//! [`Interruptible`] turns that into the end of the input. Every other thread is started
//! with both signals blocked ([`with_signals_blocked`]), so the kernel delivers them to
//! the main thread, the one that polls the flag.
#![expect(
    unsafe_code,
    reason = "sigaction and pthread_sigmask have no safe wrapper in the dependencies"
)]

use std::io::{self, ErrorKind, Read};
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

/// The last signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The signals handled.
const HANDLED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// A signal that asked the command to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// The signal number.
    signal: libc::c_int,
}

impl Stop {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self.signal {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }

    /// The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(u8::MAX)
    }
}

extern "C" fn note(signal: libc::c_int) {
    RECEIVED.store(signal, SeqCst);
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() -> io::Result<()> {
    for signal in HANDLED {
        // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct (no
        // handler, empty flags); every field that matters is set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0;
        // SAFETY: `action.sa_mask` is a valid, writable `sigset_t` owned by this frame.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialized and outlives the call; `note` only does an
        // atomic store, which is async-signal-safe; a null old action is allowed.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signal received since [`install`], if any.
pub fn received() -> Option<Stop> {
    match RECEIVED.load(SeqCst) {
        0 => None,
        signal => Some(Stop { signal }),
    }
}

/// Runs `start` (which starts threads: opening a log, spawning producers) with SIGINT and
/// SIGTERM blocked in this thread, so the threads it starts inherit them blocked and the
/// signals reach this thread only. A signal that arrives meanwhile is delivered when
/// `start` returns.
pub fn with_signals_blocked<T>(start: impl FnOnce() -> T) -> T {
    // SAFETY: an all-zero `sigset_t` is a valid value; `sigemptyset` then initializes it.
    let mut blocked: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for the mask saved and restored.
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `blocked` is a valid, writable `sigset_t` owned by this frame, and the
    // signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut blocked);
        for signal in HANDLED {
            libc::sigaddset(&mut blocked, signal);
        }
    }
    // SAFETY: both sets are valid and outlive the call; it changes only this thread's mask.
    let masked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut previous) } == 0;
    let out = start();
    if masked {
        // SAFETY: `previous` was filled by the successful call above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    }
    out
}

/// A reader that ends (reads 0 bytes) once a signal was received, including when one
/// interrupts a blocked read.
pub struct Interruptible<R>(pub R);

impl<R: Read> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if received().is_some() {
                return Ok(0);
            }
            match self.0.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}
