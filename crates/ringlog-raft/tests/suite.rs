//! openraft's storage test suite on a ringlog-backed `LogStore` (one fresh directory per
//! test of the suite).

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use ringlog_raft::mem::{AppliedLog, MemStateMachine};
use ringlog_raft::LogStore;

openraft::declare_raft_types!(pub TC: D = Vec<u8>, R = (), SnapshotData = std::io::Cursor<Vec<u8>>);

type Sm = MemStateMachine<TC, AppliedLog<Vec<u8>>>;

struct Builder;

impl StoreBuilder<TC, LogStore<TC>, Sm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore<TC>, Sm), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = ringlog::Options::default().segment_bytes(1 << 20);
        let store = LogStore::open(dir.path(), opts).expect("open the store");
        Ok((dir, store, Sm::default()))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}
