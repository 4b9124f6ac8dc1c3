//! openraft's storage conformance suite against our RocksDB log store and
//! state machine (real RocksDB in a temp dir, one per test case).

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use synod_raft::{LogStore, StateMachine, TypeConfig};
use synod_store::{Store, StoreOptions};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        let sm = StateMachine::new(store.clone(), &dir.path().join("snapshots")).expect("snapshot dir");
        Ok((dir, LogStore::new(store).expect("log writer"), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(RocksBuilder).await.expect("openraft storage suite");
}
