//! [`RaftNode`]: one replica's raft, with the operations the rest of Kokoa needs — propose a
//! command (forwarded to the leader when this replica is not it), linearizable read barriers,
//! bootstrap and membership changes, and a status summary.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kokoa_store::{Command, Outcome, StateDb, StoreError};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::batcher::Batcher;
use crate::log_store::LogStore;
use crate::network::PeerNetwork;
use crate::rpc::{ForwardRequest, ForwardResponse};
use crate::state_machine::{AppliedPosition, StateMachine};
use crate::transport::{PeerTransport, TransportError};
use crate::types::{NodeId, Raft, ReplicaNode};

/// How long a write or read keeps looking for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Timeout of one forwarded write or read-index call.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a membership change (the learner may have a lot to catch up).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);
/// First and longest pause between attempts while there is no leader.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// How a replica's raft is set up.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub id: NodeId,
    /// Holds `log.redb` and `state.redb`.
    pub data_dir: PathBuf,
    /// The cluster secret peers must present.
    pub secret: String,
    /// The address outgoing peer connections come from: the peer listener's IP when it is a
    /// specific one, so that firewalls can tell replicas apart (`None`: the system picks it).
    pub peer_source: Option<IpAddr>,
    /// Lower bound of the randomised election timeout; the upper is twice it, heartbeats are a
    /// sixth of it.
    pub election_timeout_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_every: u64,
}

impl RaftOptions {
    fn raft_config(&self) -> Result<Config, RaftNodeError> {
        let keep = (self.snapshot_every / 5).min(1000);
        Config {
            cluster_name: "kokoa".into(),
            heartbeat_interval: (self.election_timeout_ms / 6).max(10),
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: keep,
            purge_batch_size: 1,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            max_payload_entries: 1000,
            ..Config::default()
        }
        .validate()
        .map_err(|e| RaftNodeError::Config(e.to_string()))
    }
}

/// What went wrong with a raft operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftNodeError {
    #[error("no leader is reachable right now")]
    NoLeader,
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
    #[error("the request reached the leader but its outcome is unknown: {0}")]
    OutcomeUnknown(String),
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("the raft node has stopped: {0}")]
    Stopped(String),
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RaftNodeError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RaftNodeError::NoLeader
                | RaftNodeError::Unavailable(_)
                | RaftNodeError::OutcomeUnknown(_)
        )
    }
}

/// A committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Raft log index of the entry.
    pub index: u64,
    pub outcome: Outcome,
}

/// One member of the cluster, as raft's membership has it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub id: NodeId,
    pub peer_addr: String,
    pub api_addr: String,
    pub voter: bool,
}

/// A summary of this replica's view of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub version: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub state: &'static str,
    pub members: Vec<Member>,
}

/// What a replica's leader-only attempt ended with.
pub(crate) enum Attempt<T> {
    Done(T),
    NotLeader(Option<ReplicaNode>),
    Failed(RaftNodeError),
}

/// One replica's raft. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    state: StateMachine,
    transport: PeerTransport,
    batcher: Batcher,
    leader_contact: std::sync::Mutex<Option<std::time::Instant>>,
    /// The last log index when this process started; see [`RaftNode::read_index_here`].
    read_floor: u64,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Opens the replica's storage under `opts.data_dir` and starts raft (not yet initialised
    /// when the data dir is new).
    pub async fn open(opts: RaftOptions) -> Result<Self, RaftNodeError> {
        let config = Arc::new(opts.raft_config()?);
        let transport = PeerTransport::new(&opts.secret, opts.peer_source)
            .map_err(|e| RaftNodeError::Config(e.to_string()))?;
        let (log, state) = {
            let dir = opts.data_dir.clone();
            tokio::task::spawn_blocking(move || {
                Ok::<_, StoreError>((
                    LogStore::open(&dir.join("log.redb"))?,
                    StateMachine::open(&dir)?,
                ))
            })
            .await
            .map_err(|e| RaftNodeError::Stopped(e.to_string()))??
        };
        let read_floor = log.last_index();
        let network = PeerNetwork {
            transport: transport.clone(),
        };
        let raft = Raft::new(opts.id, config, network, log, state.clone())
            .await
            .map_err(|e| RaftNodeError::Stopped(e.to_string()))?;
        let batcher = Batcher::start(raft.clone());
        tokio::spawn(state.flush_when_idle());
        Ok(RaftNode {
            inner: Arc::new(Inner {
                id: opts.id,
                raft,
                state,
                transport,
                batcher,
                leader_contact: std::sync::Mutex::new(None),
                read_floor,
            }),
        })
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub(crate) fn transport(&self) -> &PeerTransport {
        &self.inner.transport
    }

    /// The router for `--peer-listen`.
    pub fn peer_router(&self) -> axum::Router {
        crate::peer_server::router(self.clone())
    }

    /// The local state database (reads only; writes go through [`RaftNode::write`]).
    pub fn state(&self) -> &Arc<StateDb> {
        self.inner.state.db()
    }

    /// Follows the local applied position.
    pub fn position(&self) -> watch::Receiver<AppliedPosition> {
        self.inner.state.position()
    }

    /// Follows the local state version (changes only when the state does).
    pub fn version_watch(&self) -> watch::Receiver<u64> {
        self.inner.state.version_watch()
    }

    /// Whether this replica belongs to an initialised cluster.
    pub async fn is_initialized(&self) -> Result<bool, RaftNodeError> {
        self.raft()
            .is_initialized()
            .await
            .map_err(|e| RaftNodeError::Stopped(e.to_string()))
    }

    /// Initialises a new cluster whose voters are `members`. Does nothing when this replica is
    /// already part of a cluster.
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, ReplicaNode>,
    ) -> Result<(), RaftNodeError> {
        if self.is_initialized().await? {
            return Ok(());
        }
        match self.raft().initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(RaftNodeError::Membership(e.to_string())),
        }
    }

    /// Proposes `cmd`; returns once it is committed and applied on the leader (and, briefly
    /// awaited, here). Followers forward to the leader.
    pub async fn write(&self, cmd: Command) -> Result<Written, RaftNodeError> {
        let written = self
            .on_leader(
                LEADER_WAIT,
                ForwardRequest::Write(Box::new(cmd.clone())),
                || self.write_here(cmd.clone()),
            )
            .await?;
        // Read-your-writes on this replica, without waiting long for a slow one.
        self.wait_applied(written.index, Duration::from_secs(2))
            .await;
        Ok(written)
    }

    /// Returns once this replica's state includes every write committed before the call
    /// (a linearizable read barrier through the leader's read index).
    pub async fn read_barrier(&self) -> Result<(), RaftNodeError> {
        let done = self
            .on_leader(LEADER_WAIT, ForwardRequest::ReadIndex, || {
                self.read_index_here()
            })
            .await?;
        if self.wait_applied(done.index, LEADER_WAIT).await {
            Ok(())
        } else {
            Err(RaftNodeError::Unavailable(
                "this replica is too far behind the leader".into(),
            ))
        }
    }

    /// Adds replica `id` as a learner, waits for it to catch up, then makes it a voter.
    /// Succeeds at once when it is already a voter at the same address.
    pub async fn add_voter(&self, id: NodeId, node: ReplicaNode) -> Result<u64, RaftNodeError> {
        let req = ForwardRequest::AddVoter {
            id,
            node: node.clone(),
        };
        let done = self
            .on_leader(MEMBERSHIP_TIMEOUT, req, || {
                self.add_voter_here(id, node.clone())
            })
            .await?;
        Ok(done.index)
    }

    /// Removes replica `id` from the cluster.
    pub async fn remove_voter(&self, id: NodeId) -> Result<u64, RaftNodeError> {
        let done = self
            .on_leader(
                MEMBERSHIP_TIMEOUT,
                ForwardRequest::RemoveVoter { id },
                || self.remove_voter_here(id),
            )
            .await?;
        Ok(done.index)
    }

    /// Waits until the local state has applied `index`; false on timeout.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.position();
        tokio::time::timeout(timeout, rx.wait_for(|p| p.index >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// This replica's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                peer_addr: node.peer_addr.clone(),
                api_addr: node.api_addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let position = *self.inner.state.position().borrow();
        ClusterStatus {
            node_id: self.id(),
            leader_id: m.current_leader,
            term: m.current_term,
            applied_index: position.index,
            version: position.version,
            state,
            members,
        }
    }

    /// How long since this replica last heard from a leader: for the leader, since a quorum
    /// last acknowledged it; for a follower, since the leader's last append or heartbeat.
    /// `None` when it never has.
    pub fn leader_contact_age(&self) -> Option<Duration> {
        let (is_leader, quorum_ack) = {
            let metrics = self.raft().metrics();
            let m = metrics.borrow();
            (m.state == ServerState::Leader, m.millis_since_quorum_ack)
        };
        if is_leader {
            return quorum_ack.map(Duration::from_millis);
        }
        let last = *self
            .inner
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.map(|t| t.elapsed())
    }

    /// Notes that the leader was heard from (the peer server calls this on every append).
    pub(crate) fn note_leader_contact(&self) {
        *self
            .inner
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// Resolves when raft stops by itself (a fatal error such as a failed disk write), with
    /// the reason.
    pub async fn stopped(&self) -> String {
        let mut rx = self.raft().metrics();
        loop {
            if let Err(e) = &rx.borrow().running_state {
                return e.to_string();
            }
            if rx.changed().await.is_err() {
                return "raft metrics closed".into();
            }
        }
    }

    /// Stops raft, then makes the state durable, so that a restart starts where this stopped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft().shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.inner.state.flush().await {
            tracing::warn!(error = %e, "cannot flush the state at shutdown");
        }
    }

    /// Serves a request forwarded by another replica: only as leader, never forwarding again.
    pub(crate) async fn handle_forward(&self, req: ForwardRequest) -> ForwardResponse {
        let attempt = match req {
            ForwardRequest::Write(cmd) => self.write_here(*cmd).await,
            ForwardRequest::ReadIndex => self.read_index_here().await,
            ForwardRequest::AddVoter { id, node } => self.add_voter_here(id, node).await,
            ForwardRequest::RemoveVoter { id } => self.remove_voter_here(id).await,
        };
        match attempt {
            Attempt::Done(w) => ForwardResponse::Done {
                index: w.index,
                outcome: w.outcome,
            },
            Attempt::NotLeader(_) => ForwardResponse::NotLeader,
            Attempt::Failed(e) => ForwardResponse::Failed(e.to_string()),
        }
    }

    /// Runs `here` if this replica leads, otherwise forwards `req` to the leader; retries while
    /// there is no leader, up to `patience`.
    async fn on_leader<F, Fut>(
        &self,
        patience: Duration,
        req: ForwardRequest,
        here: F,
    ) -> Result<Written, RaftNodeError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Attempt<Written>>,
    {
        let deadline = Instant::now() + patience;
        let mut pause = RETRY_MIN;
        let is_write = matches!(req, ForwardRequest::Write(_));
        loop {
            match here().await {
                Attempt::Done(w) => return Ok(w),
                Attempt::Failed(e) => return Err(e),
                Attempt::NotLeader(Some(leader)) => {
                    let timeout = if matches!(
                        req,
                        ForwardRequest::AddVoter { .. } | ForwardRequest::RemoveVoter { .. }
                    ) {
                        MEMBERSHIP_TIMEOUT
                    } else {
                        FORWARD_TIMEOUT
                    };
                    let answer: Result<ForwardResponse, TransportError> = self
                        .transport()
                        .call(&leader.peer_addr, "forward", &req, timeout)
                        .await;
                    match answer {
                        Ok(ForwardResponse::Done { index, outcome }) => {
                            return Ok(Written { index, outcome })
                        }
                        Ok(ForwardResponse::Failed(msg)) => {
                            return Err(RaftNodeError::Unavailable(msg))
                        }
                        Ok(ForwardResponse::NotLeader) => {}
                        Err(e) if e.not_delivered() || !is_write => {
                            tracing::debug!(error = %e, "forward to leader failed; retrying");
                        }
                        Err(e) => return Err(RaftNodeError::OutcomeUnknown(e.to_string())),
                    }
                }
                Attempt::NotLeader(None) => {}
            }
            if Instant::now() + pause > deadline {
                return Err(RaftNodeError::NoLeader);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    async fn write_here(&self, cmd: Command) -> Attempt<Written> {
        self.inner.batcher.propose(cmd).await
    }

    /// The read index, when this replica is the leader: raft's (its commit position, at least
    /// its first entry of the term) once a quorum has confirmed the leadership, raised to
    /// [`Inner::read_floor`]. A leader that restarts keeps its term without an election, and
    /// reloads its commit position from the state database, which a crash may have taken back
    /// (most applies skip the fsync): writes it acknowledged before the crash are in its log but
    /// may not be in that position. Its whole log at start holds every one of them, so reads
    /// wait for that; once the commit position has passed it the floor costs nothing.
    async fn read_index_here(&self) -> Attempt<Written> {
        match self.raft().get_read_log_id().await {
            Ok((read, _applied)) => Attempt::Done(Written {
                index: read.map_or(0, |l| l.index).max(self.inner.read_floor),
                outcome: Outcome::Applied,
            }),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => not_leader(f),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                tracing::debug!(error = %q, "read index: no quorum yet");
                Attempt::NotLeader(None)
            }
            Err(e) => Attempt::Failed(RaftNodeError::Stopped(e.to_string())),
        }
    }

    async fn add_voter_here(&self, id: NodeId, node: ReplicaNode) -> Attempt<Written> {
        let current = self.status();
        if current
            .members
            .iter()
            .any(|m| m.id == id && m.voter && m.peer_addr == node.peer_addr)
        {
            let index = self.raft().metrics().borrow().last_log_index.unwrap_or(0);
            return Attempt::Done(Written {
                index,
                outcome: Outcome::Applied,
            });
        }
        if let Err(e) = self.raft().add_learner(id, node, true).await {
            return membership_error(e);
        }
        let voters: BTreeSet<NodeId> = [id].into();
        match self
            .raft()
            .change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
        {
            Ok(resp) => Attempt::Done(Written {
                index: resp.log_id.index,
                outcome: Outcome::Applied,
            }),
            Err(e) => membership_error(e),
        }
    }

    async fn remove_voter_here(&self, id: NodeId) -> Attempt<Written> {
        if !self.status().members.iter().any(|m| m.id == id) {
            return Attempt::Failed(RaftNodeError::Membership(format!(
                "replica {id} is not a member"
            )));
        }
        let ids: BTreeSet<NodeId> = [id].into();
        match self
            .raft()
            .change_membership(ChangeMembers::RemoveVoters(ids), false)
            .await
        {
            Ok(resp) => Attempt::Done(Written {
                index: resp.log_id.index,
                outcome: Outcome::Applied,
            }),
            Err(e) => membership_error(e),
        }
    }
}

fn not_leader<T>(f: ForwardToLeader<NodeId, ReplicaNode>) -> Attempt<T> {
    Attempt::NotLeader(f.leader_node)
}

fn membership_error<T>(e: RaftError<NodeId, ClientWriteError<NodeId, ReplicaNode>>) -> Attempt<T> {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Attempt::Failed(RaftNodeError::Membership(e.to_string()))
        }
        RaftError::Fatal(e) => Attempt::Failed(RaftNodeError::Stopped(e.to_string())),
    }
}
