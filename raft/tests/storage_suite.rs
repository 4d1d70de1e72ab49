//! openraft's storage conformance suite, run against the redb log store and state machine.

use kokoa_raft::{LogStore, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("log.redb")).expect("open log");
        let sm = StateMachine::open(&dir.path().join("state.redb")).expect("open state");
        Ok((dir, log, sm))
    }
}

#[test]
fn redb_storage_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}

/// Reopening the same files gives back the log, the vote and the applied state.
#[test]
fn state_survives_reopen() {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let mut log = LogStore::open(&dir.path().join("log.redb")).unwrap();
        let vote = openraft::Vote::new(3, 1);
        log.save_vote(&vote).await.unwrap();
        drop(log);
        // The writer thread lets go of the file once the last handle is dropped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut log = loop {
            match LogStore::open(&dir.path().join("log.redb")) {
                Ok(log) => break log,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        let mut sm = StateMachine::open(&dir.path().join("state.redb")).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, None);
    });
}
