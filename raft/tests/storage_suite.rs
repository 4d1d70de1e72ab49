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
        let sm = StateMachine::open(dir.path()).expect("open state");
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
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, None);
    });
}

/// A purge is recorded at once and the entries behind it are deleted lazily: after a reopen the
/// log starts right after the purge mark, with nothing missing after it.
#[test]
fn purged_entries_stay_purged_across_reopen() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::{Entry, EntryPayload, LogId, RaftLogReader};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let log_id = |i: u64| LogId::new(openraft::CommittedLeaderId::new(1, 1), i);
    rt.block_on(async {
        let mut log = LogStore::open(&path).unwrap();
        let entries: Vec<Entry<TypeConfig>> = (1..=1000)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            })
            .collect();
        log.blocking_append(entries).await.unwrap();
        log.purge(log_id(900)).await.unwrap();
        // A vote is awaited: once it is durable, so is the purge mark queued before it.
        log.save_vote(&openraft::Vote::new(1, 1)).await.unwrap();
        drop(log);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut log = loop {
            match LogStore::open(&path) {
                Ok(log) => break log,
                Err(_) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(900)));
        assert_eq!(state.last_log_id, Some(log_id(1000)));
        let got = log.try_get_log_entries(0..2000).await.unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (901..=1000).collect::<Vec<_>>());
    });
}
