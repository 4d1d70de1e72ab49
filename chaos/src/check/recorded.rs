//! A run's whole recorded history as one serde value, so a run can dump it as JSON and the same
//! checks can be run again on the file (the planted-fault tests do exactly that).
//!
//! JSON shape (every field optional, unknown fields refused):
//!
//! ```json
//! {
//!   "acks": [{"what": "route:r1", "index": 12, "at_us": 1500}],
//!   "replicas": {"1": ["route:r1"], "2": ["route:r1"]},
//!   "register_initial": 0,
//!   "register": [
//!     {"client": 0, "call": {"write": 1}, "result": "write_ok", "start_us": 0, "end_us": 90},
//!     {"client": 1, "call": "read", "result": {"read_ok": 1}, "start_us": 95, "end_us": 120}
//!   ],
//!   "versions": [{"who": "edge:e1", "version": 3, "line": 17}],
//!   "availability": [{"what": "GET /", "ok": 99, "total": 100, "required": 0.95}]
//! }
//! ```
//!
//! A register result is `"write_ok"`, `{"read_ok": N}`, `"failed"` or `"unknown"`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    availability, linearizable, lost_writes, monotonic_versions, LinearizabilityStats, Violation,
};
use crate::history::{Ack, RegisterOp, VersionObs};

/// Everything a run recorded that the checkers look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordedHistory {
    /// Writes the control plane acknowledged.
    pub acks: Vec<Ack>,
    /// Each replica's final state after healing: replica name to the `what` keys present.
    pub replicas: BTreeMap<String, BTreeSet<String>>,
    /// The register's value before the run (`None`: unknown).
    pub register_initial: Option<u32>,
    /// The register's operations, from all clients.
    pub register: Vec<RegisterOp>,
    /// Config versions edges and agents applied, each one's in its log order.
    pub versions: Vec<VersionObs>,
    /// Success counts to hold to a required ratio.
    pub availability: Vec<AvailabilityTally>,
}

/// How many of some attempts succeeded, and the ratio required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityTally {
    pub what: String,
    pub ok: u64,
    pub total: u64,
    pub required: f64,
}

/// What [`RecordedHistory::check`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Every violation, in the order: lost writes, register, versions, availability.
    pub violations: Vec<Violation>,
    /// The register check's statistics when it passed.
    pub register: Option<LinearizabilityStats>,
}

impl RecordedHistory {
    /// Runs every checker on the history.
    pub fn check(&self) -> CheckReport {
        let replicas: Vec<(String, BTreeSet<String>)> = self
            .replicas
            .iter()
            .map(|(name, present)| (name.clone(), present.clone()))
            .collect();
        let mut violations = lost_writes(&self.acks, &replicas);
        let register = match linearizable(&self.register, self.register_initial) {
            Ok(stats) => Some(stats),
            Err(violation) => {
                violations.push(violation);
                None
            }
        };
        violations.extend(monotonic_versions(&self.versions));
        violations.extend(
            self.availability.iter().filter_map(|tally| {
                availability(&tally.what, tally.ok, tally.total, tally.required)
            }),
        );
        CheckReport {
            violations,
            register,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{RegisterCall, RegisterResult};

    #[test]
    fn round_trips_through_json_in_the_documented_shape() {
        let json = r#"{
            "acks": [{"what": "route:r1", "index": 12, "at_us": 1500}],
            "replicas": {"1": ["route:r1"], "2": []},
            "register_initial": 0,
            "register": [
                {"client": 0, "call": {"write": 1}, "result": "write_ok", "start_us": 0, "end_us": 90},
                {"client": 1, "call": "read", "result": {"read_ok": 1}, "start_us": 95, "end_us": 120}
            ],
            "versions": [{"who": "edge:e1", "version": 3, "line": 17}],
            "availability": [{"what": "GET /", "ok": 9, "total": 10, "required": 0.95}]
        }"#;
        let history: RecordedHistory = serde_json::from_str(json).expect("parse");
        assert_eq!(
            history.register[1],
            RegisterOp {
                client: 1,
                call: RegisterCall::Read,
                result: RegisterResult::ReadOk(1),
                start_us: 95,
                end_us: 120,
            }
        );
        let again: RecordedHistory =
            serde_json::from_str(&serde_json::to_string(&history).expect("serialize"))
                .expect("parse again");
        assert_eq!(again, history);

        let report = history.check();
        let kinds: Vec<&str> = report.violations.iter().map(Violation::kind).collect();
        assert_eq!(kinds, vec!["lost_write", "availability"]);
        assert_eq!(report.register.map(|stats| stats.ops_checked), Some(2));
    }

    #[test]
    fn empty_and_misspelled_histories() {
        let empty: RecordedHistory = serde_json::from_str("{}").expect("parse");
        assert_eq!(empty.check().violations, Vec::new());
        assert!(serde_json::from_str::<RecordedHistory>(r#"{"ackz": []}"#).is_err());
    }
}
