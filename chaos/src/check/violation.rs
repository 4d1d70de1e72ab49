//! The invariant violations the checkers report: one enum, serialized with a `kind` tag so a run
//! can dump them as JSON, and a Display line a human can act on.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::{RegisterCall, RegisterOp, RegisterResult};

/// One broken invariant (or a checker that could not decide). New kinds may be added as the
/// suite learns to check more; match with a wildcard arm outside this crate's checkers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// An acknowledged write is missing from a replica's state after the cluster healed.
    #[error("acknowledged write {what} (log index {index}) is missing on replica {replica}")]
    LostWrite {
        what: String,
        index: u64,
        replica: String,
    },
    /// The register history has no linearization; `ops` is a small window of the operations
    /// involved (at most [`MAX_OPS_SHOWN`]), in start order.
    #[error(
        "the register history is not linearizable: {reason}; operations involved: {}",
        describe_ops(.ops)
    )]
    NotLinearizable {
        reason: String,
        ops: Vec<RegisterOp>,
    },
    /// An edge or agent applied a config version lower than one it had applied before.
    #[error("{who} went back from config version {from} to {to} (log line {line})")]
    VersionRegression {
        who: String,
        from: u64,
        to: u64,
        line: usize,
    },
    /// A success ratio below the required one.
    #[error(
        "{what}: {ok} of {total} succeeded ({:.1}%), below the required {:.1}%",
        percent(*.ok as f64 / *.total as f64),
        percent(*.required)
    )]
    Availability {
        what: String,
        ok: u64,
        total: u64,
        required: f64,
    },
    /// The deployment did not reach the expected state in time (reported by the runner).
    #[error("not converged: {reason}")]
    NotConverged { reason: String },
    /// A checker hit its work limit before deciding: neither a pass nor a proven violation.
    #[error(
        "the {what} check gave up after {states} states (limit {limit}): \
         the history is too concurrent to decide within the limit"
    )]
    CheckerGaveUp {
        what: String,
        states: u64,
        limit: u64,
    },
    /// The recorded history breaks the checker's assumptions (a recorder bug, not a system bug):
    /// e.g. a value written twice, or an answer that does not fit its call.
    #[error("malformed history: {reason}")]
    MalformedHistory { reason: String },
}

/// The most register operations a [`Violation::NotLinearizable`] carries.
pub const MAX_OPS_SHOWN: usize = 10;

impl Violation {
    /// The `kind` tag this violation serializes with (`lost_write`, `not_linearizable`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::LostWrite { .. } => "lost_write",
            Violation::NotLinearizable { .. } => "not_linearizable",
            Violation::VersionRegression { .. } => "version_regression",
            Violation::Availability { .. } => "availability",
            Violation::NotConverged { .. } => "not_converged",
            Violation::CheckerGaveUp { .. } => "checker_gave_up",
            Violation::MalformedHistory { .. } => "malformed_history",
        }
    }
}

fn percent(ratio: f64) -> f64 {
    ratio * 100.0
}

/// `client 1 write 5 -> ok [100..250us]; client 2 read -> 4 [120..130us]`.
pub fn describe_ops(ops: &[RegisterOp]) -> String {
    let mut text = String::new();
    for (n, op) in ops.iter().enumerate() {
        if n > 0 {
            text.push_str("; ");
        }
        let call = match op.call {
            RegisterCall::Write(value) => format!("write {value}"),
            RegisterCall::Read => "read".to_string(),
        };
        let result = match op.result {
            RegisterResult::WriteOk => "ok".to_string(),
            RegisterResult::ReadOk(value) => value.to_string(),
            RegisterResult::Failed => "failed".to_string(),
            RegisterResult::Unknown => "unknown".to_string(),
        };
        let _ = write!(
            text,
            "client {} {call} -> {result} [{}..{}us]",
            op.client, op.start_us, op.end_us
        );
    }
    if text.is_empty() {
        text.push_str("(none)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_a_snake_case_kind_tag() {
        let lost = Violation::LostWrite {
            what: "route:r1".into(),
            index: 7,
            replica: "2".into(),
        };
        let json = serde_json::to_value(&lost).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"kind": "lost_write", "what": "route:r1", "index": 7, "replica": "2"})
        );
        assert_eq!(lost.kind(), "lost_write");
        let back: Violation = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, lost);

        let gave_up = Violation::CheckerGaveUp {
            what: "register linearizability".into(),
            states: 11,
            limit: 10,
        };
        let json = serde_json::to_value(&gave_up).expect("serialize");
        assert_eq!(json["kind"], gave_up.kind());
    }

    #[test]
    fn displays_for_humans() {
        let availability = Violation::Availability {
            what: "data plane GETs".into(),
            ok: 90,
            total: 100,
            required: 0.95,
        };
        assert_eq!(
            availability.to_string(),
            "data plane GETs: 90 of 100 succeeded (90.0%), below the required 95.0%"
        );
        let stale = Violation::NotLinearizable {
            reason: "stale".into(),
            ops: vec![RegisterOp {
                client: 2,
                call: RegisterCall::Read,
                result: RegisterResult::ReadOk(1),
                start_us: 40,
                end_us: 50,
            }],
        };
        assert_eq!(
            stale.to_string(),
            "the register history is not linearizable: stale; operations involved: \
             client 2 read -> 1 [40..50us]"
        );
        let regression = Violation::VersionRegression {
            who: "edge:e1".into(),
            from: 5,
            to: 3,
            line: 12,
        };
        assert_eq!(
            regression.to_string(),
            "edge:e1 went back from config version 5 to 3 (log line 12)"
        );
    }
}
