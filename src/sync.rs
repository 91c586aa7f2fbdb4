//! The synchronization primitives the engine's threads share, in one place so that a
//! model checker can stand in for them.
//!
//! Normal builds use `parking_lot` locks, `std` atomics and threads, and raw futexes.
//! Built with `RUSTFLAGS="--cfg ringlog_shuttle"`, every one of them is the
//! [shuttle](https://docs.rs/shuttle) equivalent instead, so `tests/shuttle.rs` can run
//! the real group-commit hand-off (producers, writer, flush, waker, housekeeper,
//! rollover) under a scheduler that explores thread interleavings and reports a
//! deadlock or lost wake-up as a failure. Such a build works only inside
//! `shuttle::check_*`; nothing but that test uses it.
//!
//! Only what is shared between threads *and* held across another synchronization
//! operation needs to be here: shuttle runs all threads on one OS thread and switches
//! only at its own operations, so a plain lock held across one of them would block the
//! whole run.

#[cfg(ringlog_shuttle)]
pub(crate) use model::*;
#[cfg(not(ringlog_shuttle))]
pub(crate) use real::*;

#[cfg(not(ringlog_shuttle))]
mod real {
    use std::sync::Arc;

    use rustix::thread::futex;

    pub(crate) use crossbeam_utils::Backoff;
    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
    pub(crate) use std::thread::JoinHandle;

    /// Starts a named thread.
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(body)
    }

    /// A 32-bit word a thread can sleep on until another changes it and wakes it: a
    /// Linux futex.
    pub(crate) struct Futex {
        word: AtomicU32,
    }

    impl Futex {
        pub(crate) fn new(value: u32) -> Futex {
            Futex {
                word: AtomicU32::new(value),
            }
        }

        /// The word (all accesses are `SeqCst`).
        pub(crate) fn word(&self) -> &AtomicU32 {
            &self.word
        }

        /// Sleeps while the word equals `expected`; may return early (spuriously), so
        /// callers look again.
        pub(crate) fn wait(&self, expected: u32) {
            let _ = futex::wait(&self.word, futex::Flags::PRIVATE, expected, None);
        }

        /// Like [`Futex::wait`], for at most `timeout`.
        pub(crate) fn wait_for(&self, expected: u32, timeout: std::time::Duration) {
            // A timeout too long to express waits unbounded (the caller looks again).
            let timeout = futex::Timespec::try_from(timeout).ok();
            let _ = futex::wait(
                &self.word,
                futex::Flags::PRIVATE,
                expected,
                timeout.as_ref(),
            );
        }

        /// Wakes one thread sleeping on the word.
        pub(crate) fn wake_one(&self) {
            let _ = futex::wake(&self.word, futex::Flags::PRIVATE, 1);
        }
    }

    /// This thread's own futex for waiting on the durable watermark (one per thread,
    /// reused for every wait).
    pub(crate) fn thread_parker() -> Arc<Futex> {
        thread_local! {
            static PARKER: Arc<Futex> = Arc::new(Futex::new(0));
        }
        PARKER.with(Arc::clone)
    }
}

#[cfg(ringlog_shuttle)]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::sync::{Arc, PoisonError};
    use std::time::Duration;

    pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
    pub(crate) use shuttle::thread::{yield_now, JoinHandle};

    /// crossbeam's `Backoff` as the model sees it: each snooze yields to shuttle's
    /// scheduler (crossbeam's would spin and yield to the OS, which the model does not
    /// see).
    #[derive(Default)]
    pub(crate) struct Backoff;

    impl Backoff {
        pub(crate) fn new() -> Backoff {
            Backoff
        }

        pub(crate) fn snooze(&self) {
            yield_now();
        }
    }

    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        shuttle::thread::Builder::new()
            .name(name.to_string())
            .spawn(body)
    }

    /// `parking_lot`'s mutex interface over shuttle's (poisoning is ignored, as
    /// `parking_lot` has none).
    pub(crate) struct Mutex<T> {
        inner: shuttle::sync::Mutex<T>,
    }

    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a shuttle::sync::Mutex<T>,
        /// `None` only while a condition variable wait has released it.
        guard: Option<shuttle::sync::MutexGuard<'a, T>>,
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Mutex<T> {
            Mutex::new(T::default())
        }
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex {
                inner: shuttle::sync::Mutex::new(value),
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: &self.inner,
                guard: Some(self.inner.lock().unwrap_or_else(PoisonError::into_inner)),
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            let guard = match self.inner.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            };
            Some(MutexGuard {
                mutex: &self.inner,
                guard: Some(guard),
            })
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.guard.as_ref().expect("mutex guard held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_mut().expect("mutex guard held")
        }
    }

    pub(crate) struct Condvar {
        inner: shuttle::sync::Condvar,
    }

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar {
                inner: shuttle::sync::Condvar::new(),
            }
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let held = guard.guard.take().expect("mutex guard held");
            let held = self
                .inner
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
            guard.guard = Some(held);
        }

        /// Shuttle does not model time (its own timed wait never times out, which would
        /// turn every timeout the engine relies on into a hang). So a timed wait lets
        /// the other threads run and then returns as though its time ran out, which is
        /// one of the outcomes a real timed wait has; callers look at their condition
        /// again either way.
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) {
            drop(guard.guard.take());
            yield_now();
            guard.guard = Some(guard.mutex.lock().unwrap_or_else(PoisonError::into_inner));
        }

        pub(crate) fn notify_one(&self) {
            self.inner.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.inner.notify_all();
        }
    }

    /// `parking_lot`'s reader-writer lock interface over shuttle's.
    pub(crate) struct RwLock<T> {
        inner: shuttle::sync::RwLock<T>,
    }

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> RwLock<T> {
            RwLock {
                inner: shuttle::sync::RwLock::new(value),
            }
        }

        pub(crate) fn read(&self) -> shuttle::sync::RwLockReadGuard<'_, T> {
            self.inner.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> shuttle::sync::RwLockWriteGuard<'_, T> {
            self.inner.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// A futex as shuttle can see it: checking the word and going to sleep happen under
    /// a lock that the waking side also takes, which is the atomicity the kernel gives
    /// `FUTEX_WAIT` against `FUTEX_WAKE`.
    pub(crate) struct Futex {
        word: AtomicU32,
        lock: shuttle::sync::Mutex<()>,
        sleepers: shuttle::sync::Condvar,
    }

    impl Futex {
        pub(crate) fn new(value: u32) -> Futex {
            Futex {
                word: AtomicU32::new(value),
                lock: shuttle::sync::Mutex::new(()),
                sleepers: shuttle::sync::Condvar::new(),
            }
        }

        pub(crate) fn word(&self) -> &AtomicU32 {
            &self.word
        }

        pub(crate) fn wait(&self, expected: u32) {
            let held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            if self.word.load(std::sync::atomic::Ordering::SeqCst) == expected {
                drop(self.sleepers.wait(held));
            }
        }

        /// Shuttle does not model time: lets the other threads run, then returns as
        /// though the time ran out (see `Condvar::wait_for`).
        pub(crate) fn wait_for(&self, _expected: u32, _timeout: Duration) {
            yield_now();
        }

        pub(crate) fn wake_one(&self) {
            let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.sleepers.notify_one();
        }
    }

    /// A fresh futex per wait: shuttle runs every thread on one OS thread, so a
    /// `std` thread-local would be shared by all of them.
    pub(crate) fn thread_parker() -> Arc<Futex> {
        Arc::new(Futex::new(0))
    }
}
