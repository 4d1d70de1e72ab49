//! The seeded fault schedule: which faults a run injects, in what order, held how long.
//! The same seed gives the same schedule (and the same choices of targets in the runner).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// kill -9 the leader, restart it from the same data dir after the hold.
    KillLeader,
    /// kill -9 a follower, restart it after the hold.
    KillFollower,
    /// SIGSTOP the leader for longer than the election timeout, then SIGCONT.
    PauseLeader,
    /// The leader cut off from both followers (a minority of one).
    IsolateLeader,
    /// Every replica cut off from every other: no majority anywhere.
    SplitAll,
    /// The leader cannot open connections to the followers; they can still open theirs to it.
    AsymmetricLeader,
    /// A graceful restart (SIGTERM, start again from the same data dir).
    RestartReplica,
    /// Every replica killed for the hold (30 s): only the data plane is left.
    ControlPlaneDown,
    /// A follower's data dir wiped: removed from the cluster, re-added as a new member.
    WipeFollower,
    /// A follower's disk full (a small tmpfs), then space again.
    DiskFullFollower,
    /// kill -9 an edge (its IP must leave DNS), restart it.
    KillEdge,
    /// kill -9 one of a tunnel origin's two agents, restart it.
    KillAgent,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::PauseLeader,
        FaultKind::IsolateLeader,
        FaultKind::SplitAll,
        FaultKind::AsymmetricLeader,
        FaultKind::RestartReplica,
        FaultKind::ControlPlaneDown,
        FaultKind::WipeFollower,
        FaultKind::DiskFullFollower,
        FaultKind::KillEdge,
        FaultKind::KillAgent,
    ];

    /// Whether it hits the control plane (the data plane must keep serving through it).
    pub fn is_control_plane(self) -> bool {
        !matches!(self, FaultKind::KillEdge | FaultKind::KillAgent)
    }

    /// How long the fault is held: a range the seed picks from.
    fn hold_range_ms(self) -> (u64, u64) {
        match self {
            FaultKind::ControlPlaneDown => (30_000, 30_000),
            FaultKind::KillLeader | FaultKind::KillFollower => (3_000, 8_000),
            // Longer than the election timeout (1 s by default; the upper bound is twice it).
            FaultKind::PauseLeader => (4_000, 8_000),
            FaultKind::IsolateLeader | FaultKind::SplitAll | FaultKind::AsymmetricLeader => {
                (6_000, 12_000)
            }
            FaultKind::DiskFullFollower => (5_000, 10_000),
            FaultKind::RestartReplica
            | FaultKind::WipeFollower
            | FaultKind::KillEdge
            | FaultKind::KillAgent => (2_000, 5_000),
        }
    }
}

/// How much chaos a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every kind of fault once (the leader killed three times), in a seeded order: a few
    /// minutes, run in CI.
    Short,
    /// `rounds` shuffled rounds of every kind, for manual runs.
    Long { rounds: u32 },
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub kind: FaultKind,
    /// How long it is held before healing.
    pub hold_ms: u64,
}

impl Planned {
    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }
}

/// The faults of a run, from its seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub seed: u64,
    pub faults: Vec<Planned>,
}

impl Schedule {
    pub fn new(seed: u64, mode: Mode) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let rounds = match mode {
            Mode::Short => 1,
            Mode::Long { rounds } => rounds.max(1),
        };
        let mut faults = Vec::new();
        for _ in 0..rounds {
            let mut kinds = FaultKind::ALL.to_vec();
            // Three leader kills a round, for a failover time distribution.
            kinds.extend([FaultKind::KillLeader, FaultKind::KillLeader]);
            kinds.shuffle(&mut rng);
            for kind in kinds {
                let (low, high) = kind.hold_range_ms();
                faults.push(Planned {
                    kind,
                    hold_ms: rng.gen_range(low..=high),
                });
            }
        }
        Schedule { seed, faults }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_with_every_kind() {
        let a = Schedule::new(7, Mode::Short);
        assert_eq!(a, Schedule::new(7, Mode::Short));
        assert_ne!(a.faults, Schedule::new(8, Mode::Short).faults);
        for kind in FaultKind::ALL {
            let want = if kind == FaultKind::KillLeader { 3 } else { 1 };
            assert_eq!(a.faults.iter().filter(|p| p.kind == kind).count(), want);
        }
        let long = Schedule::new(7, Mode::Long { rounds: 3 });
        assert_eq!(long.faults.len(), 3 * (FaultKind::ALL.len() + 2));
        let down = a
            .faults
            .iter()
            .find(|p| p.kind == FaultKind::ControlPlaneDown)
            .expect("planned");
        assert_eq!(down.hold(), Duration::from_secs(30));
    }
}
