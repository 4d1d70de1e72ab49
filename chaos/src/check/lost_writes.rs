//! No acknowledged write lost: every write the control plane acknowledged must be in every
//! replica's final state once the cluster has healed.

use std::collections::BTreeSet;

use super::Violation;
use crate::history::Ack;

/// For each replica (its name and the `what` keys present in its final state), one
/// [`Violation::LostWrite`] per acknowledged `what` it lacks, in replica then ack order. A `what`
/// acknowledged more than once (a retried create) is reported once per replica, with the index
/// of its first acknowledgement. Writes are creates: a checked run never deletes what it acked.
pub fn lost_writes(acks: &[Ack], replicas: &[(String, BTreeSet<String>)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (replica, present) in replicas {
        let mut reported = BTreeSet::new();
        for ack in acks {
            if !present.contains(&ack.what) && reported.insert(ack.what.as_str()) {
                violations.push(Violation::LostWrite {
                    what: ack.what.clone(),
                    index: ack.index,
                    replica: replica.clone(),
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(what: &str, index: u64) -> Ack {
        Ack {
            sent_us: 0,
            what: what.to_string(),
            index,
            at_us: index * 100,
        }
    }

    fn replica(name: &str, present: &[&str]) -> (String, BTreeSet<String>) {
        (
            name.to_string(),
            present.iter().map(|what| what.to_string()).collect(),
        )
    }

    #[test]
    fn all_acked_writes_present_is_clean() {
        let acks = [ack("route:a", 3), ack("dns:b", 4)];
        let replicas = [
            replica("1", &["route:a", "dns:b"]),
            replica("2", &["route:a", "dns:b", "route:unacked"]),
        ];
        assert!(lost_writes(&acks, &replicas).is_empty());
        assert!(lost_writes(&[], &replicas).is_empty());
        assert!(lost_writes(&acks, &[]).is_empty());
    }

    #[test]
    fn a_lost_acked_write_is_reported_per_replica() {
        let acks = [ack("route:a", 3), ack("dns:b", 4), ack("dns:b", 9)];
        let replicas = [
            replica("1", &["route:a", "dns:b"]),
            replica("2", &["route:a"]),
            replica("3", &[]),
        ];
        assert_eq!(
            lost_writes(&acks, &replicas),
            vec![
                Violation::LostWrite {
                    what: "dns:b".into(),
                    index: 4,
                    replica: "2".into(),
                },
                Violation::LostWrite {
                    what: "route:a".into(),
                    index: 3,
                    replica: "3".into(),
                },
                Violation::LostWrite {
                    what: "dns:b".into(),
                    index: 4,
                    replica: "3".into(),
                },
            ]
        );
    }
}
