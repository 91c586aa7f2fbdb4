//! The fallback backend: `pwrite` + `fdatasync`.

use std::fs::File;
use std::io;

use super::{Backend, BackendKind};

/// Plain system calls; works everywhere.
pub(crate) struct PwriteBackend;

impl Backend for PwriteBackend {
    fn write_all_at(&mut self, file: &File, mut position: u64, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match rustix::io::pwrite(file, bytes, position) {
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

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        sync_data(file)
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Pwrite
    }
}

/// `fdatasync`, retried on EINTR.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    loop {
        match rustix::fs::fdatasync(file) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}
