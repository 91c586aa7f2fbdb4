//! Waiting for durability as a future, without a runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::log::Log;

/// Resolves once a record is durable: see [`Log::wait_durable_async`]. Woken by the
/// writer (no polling, no runtime needed).
#[must_use = "a future does nothing unless awaited"]
pub struct WaitDurable {
    log: Log,
    offset: u64,
    /// The answer found at the call, before any wait.
    early: Option<Result<()>>,
}

impl WaitDurable {
    pub(crate) fn new(log: Log, offset: u64, early: Option<Result<()>>) -> WaitDurable {
        WaitDurable { log, offset, early }
    }

    /// The offset waited for.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl std::fmt::Debug for WaitDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitDurable")
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Future for WaitDurable {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if let Some(early) = this.early.take() {
            return Poll::Ready(early);
        }
        this.log.poll_durable(this.offset, cx)
    }
}
