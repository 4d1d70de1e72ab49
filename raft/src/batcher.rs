//! Proposal batching: writes that reach the leader at the same time become one raft log entry.
//!
//! openraft handles every proposal as its own entry (its own core message, log append, flush
//! notification and replication bookkeeping). Under concurrent load that per-entry overhead,
//! not the disk, limits throughput, so proposals queue here and are sent as a
//! [`Command::Batch`] of up to [`MAX_BATCH`] commands, with at most [`MAX_IN_FLIGHT`] batches
//! proposed at once: while every slot is busy the queue fills and the next batch is larger.
//! A lone write is proposed as itself. Each command keeps its own outcome; all share the
//! entry's log index.

use std::sync::Arc;

use kokoa_store::{Command, Outcome};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::node::{Attempt, RaftNodeError, Written};
use crate::types::Raft;

/// Most commands in one log entry.
const MAX_BATCH: usize = 512;
/// Most batches proposed and not yet committed at once.
const MAX_IN_FLIGHT: usize = 2;
/// Most proposals waiting for a batch (senders wait beyond it).
const QUEUE_DEPTH: usize = 8192;

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Attempt<Written>>,
}

/// The queue in front of `client_write`. Its task ends when the batcher is dropped.
#[derive(Debug)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    pub(crate) fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes `cmd` (batched with whatever else is waiting) and waits for its outcome.
    pub(crate) async fn propose(&self, cmd: Command) -> Attempt<Written> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Pending { cmd, reply }).await.is_err() {
            return stopped("the proposal queue is closed");
        }
        rx.await
            .unwrap_or_else(|_| stopped("the proposal was dropped"))
    }
}

fn stopped<T>(why: &str) -> Attempt<T> {
    Attempt::Failed(RaftNodeError::Stopped(why.to_string()))
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    loop {
        // Take a slot before draining the queue, so proposals pile up while all are busy.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        in_flight.spawn(propose_batch(raft.clone(), batch, slot));
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn propose_batch(raft: Raft, batch: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    let (mut cmds, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let proposal = if cmds.len() == 1 {
        cmds.remove(0)
    } else {
        Command::Batch(cmds)
    };
    let single = replies.len() == 1;
    match raft.client_write(proposal).await {
        Ok(resp) => {
            let index = resp.log_id.index;
            let outcomes = match resp.data {
                Outcome::Batch(outcomes) if !single && outcomes.len() == replies.len() => outcomes,
                // A lone command, or a batch refused as a whole: everyone gets that outcome.
                other => vec![other; replies.len()],
            };
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Attempt::Done(Written { index, outcome }));
            }
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            for reply in replies {
                let _ = reply.send(Attempt::NotLeader(f.leader_node.clone()));
            }
        }
        Err(e) => {
            let why = e.to_string();
            for reply in replies {
                let _ = reply.send(stopped(&why));
            }
        }
    }
}
