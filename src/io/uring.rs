//! The io_uring backend.
//!
//! A batch is submitted as one linked chain, `WRITE` then `FSYNC(DATASYNC)`, with one
//! `io_uring_enter`; the writer wakes the producers of the previous batch while the
//! chain runs, then reaps both completions. A short write breaks the link (the flush is
//! cancelled) and is finished synchronously.
//!
//! Writes that must complete before the caller can go on (segment activation, inline
//! commits on an idle log, unsynced batches) are plain `pwrite`: ext4 has no
//! non-blocking buffered writes, so io_uring hands every buffered write to a kernel
//! worker thread, which measured ~70 µs slower than `pwrite` on an idle machine
//! (docs/design.md, "I/O backends").

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::pwrite::{pwrite_all, sync_data};
use super::{Backend, BackendKind};

const WRITE_TAG: u64 = 1;
const FSYNC_TAG: u64 = 2;
/// `sync_many`'s flushes are tagged with this plus their index.
const MANY_TAG_BASE: u64 = 1 << 32;

/// Submission queue entries: a write and flush chain needs 2; `sync_many` submits up
/// to this many flushes at once.
const RING_ENTRIES: u32 = 32;

/// A write and flush chain in flight: the ring's entries point into `bytes`.
struct InFlight {
    fd: i32,
    position: u64,
    bytes: Vec<u8>,
}

/// A small ring owned by the writer.
pub(crate) struct UringBackend {
    ring: IoUring,
    in_flight: Option<InFlight>,
    in_flight_error: Option<io::Error>,
    /// Set when a submission failed in a way that may leave entries queued or running;
    /// the ring is then never used again (the log is poisoned by the same error), and
    /// the buffer it may still reference is leaked rather than freed.
    broken: bool,
}

impl UringBackend {
    /// Sets up a ring and checks that the kernel supports the operations we submit.
    pub(crate) fn new() -> io::Result<UringBackend> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Write::CODE, "IORING_OP_WRITE"),
            (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("kernel io_uring lacks {name}"),
                ));
            }
        }
        Ok(UringBackend {
            ring,
            in_flight: None,
            in_flight_error: None,
            broken: false,
        })
    }

    fn submit_chain(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "io_uring backend unusable after an earlier failure",
            ));
        }
        let flight = self.in_flight.as_ref().expect("a chain to submit");
        let len = flight.bytes.len().min(u32::MAX as usize & !4095) as u32;
        let write = opcode::Write::new(types::Fd(flight.fd), flight.bytes.as_ptr(), len)
            .offset(flight.position)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE_TAG);
        let fsync = opcode::Fsync::new(types::Fd(flight.fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(FSYNC_TAG);
        // SAFETY: the write entry points into `flight.bytes`, a heap buffer owned by
        // `self.in_flight` that is neither moved nor freed until `finish_write_sync` has
        // reaped both completions of this chain (or, if submission failed, ever: see
        // `broken`). The ring holds no other entries: every chain is reaped before the
        // next is started.
        unsafe {
            let mut queue = self.ring.submission();
            queue
                .push_multiple(&[write, fsync])
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
    }

    /// Submits a flush of each of `files` and waits for all of them; `results` gets
    /// each one's outcome. An error of the ring itself (not of a flush) leaves the
    /// rest `None`.
    fn sync_batch(
        &mut self,
        files: &[&File],
        results: &mut [Option<io::Result<()>>],
    ) -> io::Result<()> {
        let entries: Vec<squeue::Entry> = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                opcode::Fsync::new(types::Fd(file.as_raw_fd()))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(MANY_TAG_BASE + i as u64)
            })
            .collect();
        // SAFETY: a flush entry points at no memory, only at a file descriptor, which
        // stays open while this call borrows `files` (and the kernel takes its own
        // reference to the file when it starts the operation). No chain is in flight
        // (checked by the caller), so the ring holds no other entries.
        unsafe {
            let mut queue = self.ring.submission();
            queue
                .push_multiple(&entries)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        let mut pending = files.len();
        while pending > 0 {
            match self.ring.submit_and_wait(pending) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The flushes may have run, and taken a writeback error that a retry
                    // on the same file description would not report again: each one not
                    // reaped counts as failed (its log is poisoned), never retried.
                    self.broken = true;
                    for slot in results.iter_mut().filter(|slot| slot.is_none()) {
                        *slot = Some(Err(io::Error::new(
                            e.kind(),
                            format!("io_uring failed with a flush submitted: {e}"),
                        )));
                    }
                    return Err(e);
                }
            }
            for completion in self.ring.completion() {
                let Some(i) = completion.user_data().checked_sub(MANY_TAG_BASE) else {
                    continue;
                };
                let Some(slot) = results.get_mut(i as usize) else {
                    continue;
                };
                if slot.is_none() {
                    pending -= 1;
                }
                let result = completion.result();
                *slot = Some(if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok(())
                });
            }
        }
        Ok(())
    }

    fn reap_chain(&mut self) -> io::Result<(i32, i32)> {
        let (mut write_result, mut fsync_result) = (None, None);
        while write_result.is_none() || fsync_result.is_none() {
            let pending = 2 - write_result.is_some() as usize - fsync_result.is_some() as usize;
            match self.ring.submit_and_wait(pending) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
            for completion in self.ring.completion() {
                match completion.user_data() {
                    WRITE_TAG => write_result = Some(completion.result()),
                    FSYNC_TAG => fsync_result = Some(completion.result()),
                    _ => {}
                }
            }
        }
        Ok((write_result.unwrap_or(0), fsync_result.unwrap_or(0)))
    }
}

impl Backend for UringBackend {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        pwrite_all(file, position, bytes)
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        sync_data(file)
    }

    fn start_write_sync(&mut self, file: &File, position: u64, bytes: Vec<u8>) {
        debug_assert!(self.in_flight.is_none(), "one chain at a time");
        self.in_flight = Some(InFlight {
            fd: file.as_raw_fd(),
            position,
            bytes,
        });
        if let Err(e) = self.submit_chain() {
            // Reaped (as an error) by finish_write_sync.
            self.in_flight.as_mut().expect("just set").fd = -1;
            self.in_flight_error = Some(e);
        }
    }

    fn finish_write_sync(&mut self) -> (io::Result<()>, Vec<u8>) {
        let Some(flight) = self.in_flight.as_ref() else {
            return (Err(io::Error::other("no write in flight")), Vec::new());
        };
        if flight.fd < 0 {
            let error = self
                .in_flight_error
                .take()
                .unwrap_or_else(|| io::Error::other("io_uring submission failed"));
            let flight = self.in_flight.take().expect("checked");
            if self.broken {
                // The kernel may still reference the buffer: never free it.
                std::mem::forget(flight.bytes);
                return (Err(error), Vec::new());
            }
            return (Err(error), flight.bytes);
        }
        let reaped = self.reap_chain();
        if self.broken {
            let flight = self.in_flight.take().expect("checked");
            std::mem::forget(flight.bytes);
            let error = reaped
                .err()
                .unwrap_or_else(|| io::Error::other("io_uring failed"));
            return (Err(error), Vec::new());
        }
        let flight = self.in_flight.take().expect("checked");
        let result = match reaped {
            Err(e) => Err(e),
            Ok((write, _)) if write < 0 => Err(io::Error::from_raw_os_error(-write)),
            Ok((write, fsync)) if (write as usize) < flight.bytes.len() => {
                // Short write: the link was broken and the flush cancelled. Finish both.
                let _ = fsync;
                finish_short(&flight, write as usize)
            }
            Ok((_, fsync)) if fsync < 0 => Err(io::Error::from_raw_os_error(-fsync)),
            Ok(_) => Ok(()),
        };
        (result, flight.bytes)
    }

    fn sync_many(&mut self, files: &[&File]) -> Vec<io::Result<()>> {
        if self.broken || self.in_flight.is_some() || files.len() < 2 {
            return files.iter().map(sync_data).collect();
        }
        let mut results: Vec<Option<io::Result<()>>> = files.iter().map(|_| None).collect();
        for (batch, slots) in files
            .chunks(RING_ENTRIES as usize)
            .zip(results.chunks_mut(RING_ENTRIES as usize))
        {
            if self.sync_batch(batch, slots).is_err() {
                break;
            }
        }
        // A flush never submitted (the ring broke on an earlier batch, or its queue was
        // full) is run with a plain system call.
        results
            .into_iter()
            .zip(files)
            .map(|(result, file)| result.unwrap_or_else(|| sync_data(file)))
            .collect()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn companion(&self) -> Box<dyn Backend> {
        // A flush from another thread gains nothing from a ring of its own.
        Box::new(super::PwriteBackend::default())
    }
}

/// Completes a chain whose write stopped after `written` bytes.
fn finish_short(flight: &InFlight, written: usize) -> io::Result<()> {
    if written == 0 {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "io_uring write made no progress",
        ));
    }
    // SAFETY: `fd` is the segment file descriptor the writer passed to
    // `start_write_sync`; the writer keeps that segment (and so the open descriptor)
    // alive until `finish_write_sync` returns, which is after this borrow ends.
    let fd = unsafe { BorrowedFd::borrow_raw(flight.fd) };
    pwrite_all(
        fd,
        flight.position + written as u64,
        &flight.bytes[written..],
    )?;
    sync_data(fd)
}
