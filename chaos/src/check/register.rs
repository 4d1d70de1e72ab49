//! A linearizable register: the recorded reads and writes of one read/write register (every
//! written value unique in a run) must have a linearization. This module is the entry point and
//! the report; `register_prepare` holds the preprocessing rules and `register_search` the search.

use serde::{Deserialize, Serialize};

use super::register_prepare::{prepare, Effect, Prepared};
use super::register_search::{search, Frontier, Outcome};
use super::violation::MAX_OPS_SHOWN;
use super::Violation;
use crate::history::{RegisterOp, RegisterResult};

/// The states [`linearizable`] explores before giving up. Each remembered state takes roughly
/// 100 bytes for a history with little concurrency, so this bounds the memory to about 500 MB;
/// valid histories of 5,000 ops from 4 clients need a few thousand states.
pub const DEFAULT_MAX_STATES: u64 = 5_000_000;

/// What a successful check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearizabilityStats {
    /// Ops in the recorded history.
    pub ops_total: usize,
    /// Ops left to order after preprocessing (failed ops, unanswered reads and unseen writes of
    /// unknown outcome dropped).
    pub ops_checked: usize,
    /// Distinct search states explored.
    pub states_explored: u64,
}

/// Checks that `history` has a linearization as a single read/write register starting at
/// `initial` (`None`: unknown, in which case the earliest read of a value no write produced
/// names it), exploring at most [`DEFAULT_MAX_STATES`] states. See [`linearizable_within`].
pub fn linearizable(
    history: &[RegisterOp],
    initial: Option<u32>,
) -> Result<LinearizabilityStats, Violation> {
    linearizable_within(history, initial, DEFAULT_MAX_STATES)
}

/// [`linearizable`] with an explicit state limit. Errors: [`Violation::NotLinearizable`] (with
/// the ops that could not be placed), [`Violation::CheckerGaveUp`] when `max_states` was reached
/// first, [`Violation::MalformedHistory`] when the history breaks the check's assumptions (a
/// value written twice, an answer that does not fit its call, an end before a start).
pub fn linearizable_within(
    history: &[RegisterOp],
    initial: Option<u32>,
    max_states: u64,
) -> Result<LinearizabilityStats, Violation> {
    let prepared = prepare(history, initial)?;
    match search(&prepared.ops, prepared.initial, max_states) {
        Outcome::Linearized { states } => Ok(LinearizabilityStats {
            ops_total: history.len(),
            ops_checked: prepared.ops.len(),
            states_explored: states,
        }),
        Outcome::GaveUp { states } => Err(Violation::CheckerGaveUp {
            what: "register linearizability".to_string(),
            states,
            limit: max_states,
        }),
        Outcome::Impossible { deepest, .. } => Err(not_linearizable(history, &prepared, &deepest)),
    }
}

/// The report for a history with no linearization, from the state that placed the most ops: the
/// ops that could have come next there (none fitting), the write whose value the register held,
/// and the writes of the values those reads returned.
fn not_linearizable(history: &[RegisterOp], prepared: &Prepared, deepest: &Frontier) -> Violation {
    let ops = &prepared.ops;
    let writer_of = |value: u32| {
        ops.iter()
            .find(|op| op.effect == Effect::Write(value))
            .map(|op| op.source)
    };
    let mut shown: Vec<usize> = deepest.next.iter().map(|&op| ops[op].source).collect();
    shown.truncate(MAX_OPS_SHOWN - 1);
    if let Some(current) = deepest.value.and_then(writer_of) {
        shown.push(current);
    }
    let mut mismatched_reads = Vec::new();
    for &op in &deepest.next {
        if let Effect::Read(value) = ops[op].effect {
            mismatched_reads.push(ops[op].source);
            if let Some(writer) = writer_of(value) {
                shown.push(writer);
            }
        }
    }
    shown.sort_by_key(|&source| (history[source].start_us, history[source].end_us, source));
    shown.dedup();
    shown.truncate(MAX_OPS_SHOWN);

    let value = deepest.value.map_or_else(
        || "its unknown initial value".to_string(),
        |v| v.to_string(),
    );
    let stuck = match mismatched_reads.first() {
        Some(&read) => format!(
            "client {} read {} at {}..{}us",
            history[read].client,
            read_value(&history[read]).map_or_else(String::new, |v| v.to_string()),
            history[read].start_us,
            history[read].end_us,
        ),
        None => "no op can follow".to_string(),
    };
    let next = match deepest.next.len() {
        1 => "the one op that may come next does not fit".to_string(),
        count => format!("none of the {count} ops that may come next fits"),
    };
    Violation::NotLinearizable {
        reason: format!(
            "at most {} of {} ops can be ordered, leaving the register at {value}; {next} ({stuck})",
            deepest.placed,
            ops.len(),
        ),
        ops: shown
            .into_iter()
            .map(|source| history[source].clone())
            .collect(),
    }
}

/// The value a read returned.
fn read_value(op: &RegisterOp) -> Option<u32> {
    match op.result {
        RegisterResult::ReadOk(value) => Some(value),
        _ => None,
    }
}
