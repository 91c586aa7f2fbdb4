//! The io_uring backend.
//!
//! Each batch is one `IORING_OP_WRITE` submission (continued if the kernel writes less).
//! The flush is a plain `fdatasync` call: io_uring runs `FSYNC` on a kernel worker
//! thread, which measured slower per flush on this class of machine (docs/design.md).

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types, IoUring, Probe};

use super::{Backend, BackendKind};

/// A small ring owned by the writer.
pub(crate) struct UringBackend {
    ring: IoUring,
    /// Set when a submission failed in a way that may leave an entry queued; the ring is
    /// then never used again (the log is poisoned by the same error).
    broken: bool,
}

impl UringBackend {
    /// Sets up a ring and checks that the kernel supports the operations we submit.
    pub(crate) fn new() -> io::Result<UringBackend> {
        let ring = IoUring::new(8)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Write::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel io_uring lacks IORING_OP_WRITE",
            ));
        }
        Ok(UringBackend {
            ring,
            broken: false,
        })
    }

    fn write_once(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::other(
                "io_uring backend unusable after an earlier failure",
            ));
        }
        let len = bytes.len().min(u32::MAX as usize & !4095) as u32;
        let entry = opcode::Write::new(types::Fd(file.as_raw_fd()), bytes.as_ptr(), len)
            .offset(position)
            .build()
            .user_data(1);
        // SAFETY: the entry points at `bytes`, which the caller borrows for this whole
        // call, and we do not return until the kernel has posted the completion for this
        // entry (submit_and_wait below, then the completion is reaped). The ring has no
        // other entries in flight: every call reaps what it submitted, and a failed
        // submission marks the ring broken so a queued entry is never submitted later.
        unsafe {
            self.ring
                .submission()
                .push(&entry)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        let completion = self
            .ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("io_uring returned no completion"))?;
        let result = completion.result();
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        Ok(result as usize)
    }
}

impl Backend for UringBackend {
    fn write_all_at(&mut self, file: &File, mut position: u64, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.write_once(file, position, bytes) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "io_uring write made no progress",
                    ))
                }
                Ok(written) => {
                    bytes = &bytes[written..];
                    position += written as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        super::pwrite::sync_data(file)
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }
}
