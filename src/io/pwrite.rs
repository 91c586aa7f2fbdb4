//! The fallback backend: `pwrite` + `fdatasync`.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::{Backend, BackendKind, Completed};

/// Plain system calls; works everywhere.
#[derive(Default)]
pub struct PwriteBackend {
    started: Completed,
}

impl Backend for PwriteBackend {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        pwrite_all(file, position, bytes)
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        sync_data(file)
    }

    fn start_write_sync(&mut self, file: &File, position: u64, bytes: Vec<u8>) {
        let result = super::write_sync_now(self, file, position, &bytes);
        self.started.store(result, bytes);
    }

    fn finish_write_sync(&mut self) -> (io::Result<()>, Vec<u8>) {
        self.started.take()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Pwrite
    }

    fn companion(&self) -> Box<dyn Backend> {
        Box::new(PwriteBackend::default())
    }
}

/// `pwrite` until all of `bytes` is written; a call that makes no progress is an error.
pub(crate) fn pwrite_all(file: impl AsFd, mut position: u64, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::pwrite(&file, bytes, position) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwrite made no progress",
                ))
            }
            Ok(written) => {
                bytes = &bytes[written..];
                position += written as u64;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `fdatasync`, retried on EINTR.
pub(crate) fn sync_data(file: impl AsFd) -> io::Result<()> {
    loop {
        match rustix::fs::fdatasync(&file) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}
