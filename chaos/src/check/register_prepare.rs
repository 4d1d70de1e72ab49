//! Turns a recorded register history into the intervals the linearizability search works on:
//! drops what cannot matter, bounds uncertain writes, and catches reads of values nobody wrote.
//!
//! The rules, each sound (a history is linearizable if and only if the prepared one is):
//!
//! * A `Failed` op was certainly not applied: dropped. A read that failed or whose answer is
//!   `Unknown` returned nothing and changes nothing: dropped.
//! * A write with an `Unknown` result may take effect at any time after its start, or never: its
//!   end is +infinity.
//!   - If no read returned its value, it is dropped: in any linearization it can be moved to just
//!     before the next write (or to the end, or left out), which changes what no read sees.
//!   - If some read returned its value, it must be linearized before that read, hence before the
//!     read's end: its end becomes the smallest end among the reads that returned its value (never
//!     below its own start; a read that ended before the write started then fails the search).
//! * A read returning a value that no remaining write produced and that is not the initial value
//!   is an immediate violation. With an unknown initial value, the earliest such read names the
//!   initial value; a read of any other unproduced value is the violation.
//! * Real-time order (applied by the search): op A precedes op B when `A.end < B.start`.

use std::collections::{BTreeMap, HashMap};

use super::violation::MAX_OPS_SHOWN;
use super::Violation;
use crate::history::{RegisterCall, RegisterOp, RegisterResult};

/// What a prepared op does to the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Read(u32),
    Write(u32),
}

/// One op as the search sees it: an interval (end possibly bounded, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreparedOp {
    pub start: u64,
    pub end: u64,
    pub effect: Effect,
    /// Its index in the recorded history, for reports.
    pub source: usize,
}

/// The ops to search, sorted by (start, end), and the register's initial value (`None`: unknown
/// and never read, so no read may see it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub ops: Vec<PreparedOp>,
    pub initial: Option<u32>,
}

/// Applies the module's rules to `history`.
pub(crate) fn prepare(history: &[RegisterOp], initial: Option<u32>) -> Result<Prepared, Violation> {
    // Every write that may have been applied, by value (values are unique per run).
    let mut writes: HashMap<u32, usize> = HashMap::new();
    for (index, op) in history.iter().enumerate() {
        check_well_formed(index, op)?;
        if let (RegisterCall::Write(value), RegisterResult::WriteOk | RegisterResult::Unknown) =
            (op.call, op.result)
        {
            if let Some(first) = writes.insert(value, index) {
                return Err(Violation::MalformedHistory {
                    reason: format!(
                        "value {value} is written by ops {first} and {index}; \
                         the register check needs every written value to be unique"
                    ),
                });
            }
        }
    }

    // The smallest end among the reads of each written value; the reads of other values.
    let mut first_read_end: HashMap<u32, u64> = HashMap::new();
    let mut unproduced: Vec<usize> = Vec::new();
    for (index, op) in history.iter().enumerate() {
        if let RegisterResult::ReadOk(value) = op.result {
            if writes.contains_key(&value) {
                let end = first_read_end.entry(value).or_insert(op.end_us);
                *end = (*end).min(op.end_us);
            } else {
                unproduced.push(index);
            }
        }
    }
    let initial = initial_value(history, initial, unproduced)?;

    let mut ops = Vec::with_capacity(history.len());
    for (source, op) in history.iter().enumerate() {
        let (start, end) = (op.start_us, op.end_us);
        let prepared = match (op.call, op.result) {
            (RegisterCall::Read, RegisterResult::ReadOk(value)) => Some((end, Effect::Read(value))),
            (RegisterCall::Write(value), RegisterResult::WriteOk) => {
                Some((end, Effect::Write(value)))
            }
            (RegisterCall::Write(value), RegisterResult::Unknown) => first_read_end
                .get(&value)
                .map(|&read_end| (read_end.max(start), Effect::Write(value))),
            // Failed ops, and reads without an answer.
            _ => None,
        };
        if let Some((end, effect)) = prepared {
            ops.push(PreparedOp {
                start,
                end,
                effect,
                source,
            });
        }
    }
    ops.sort_by_key(|op| (op.start, op.end, op.source));
    Ok(Prepared { ops, initial })
}

/// A result that does not fit its call, or an answer before the request: a recorder bug.
fn check_well_formed(index: usize, op: &RegisterOp) -> Result<(), Violation> {
    let fits = matches!(
        (op.call, op.result),
        (RegisterCall::Write(_), RegisterResult::WriteOk)
            | (RegisterCall::Read, RegisterResult::ReadOk(_))
            | (_, RegisterResult::Failed | RegisterResult::Unknown)
    );
    if !fits {
        return Err(Violation::MalformedHistory {
            reason: format!("op {index}: {:?} answered with {:?}", op.call, op.result),
        });
    }
    if op.end_us < op.start_us {
        return Err(Violation::MalformedHistory {
            reason: format!(
                "op {index}: ends at {}us, before it starts at {}us",
                op.end_us, op.start_us
            ),
        });
    }
    Ok(())
}

/// The initial value the search starts from, given the reads (`unproduced`, indexes into
/// `history`) of values no write produced: they must all be reads of the initial value.
fn initial_value(
    history: &[RegisterOp],
    initial: Option<u32>,
    mut unproduced: Vec<usize>,
) -> Result<Option<u32>, Violation> {
    unproduced.sort_by_key(|&index| (history[index].start_us, history[index].end_us, index));
    let read_value = |index: usize| match history[index].result {
        RegisterResult::ReadOk(value) => Some(value),
        _ => None,
    };
    let initial = initial.or_else(|| unproduced.first().and_then(|&index| read_value(index)));
    let bad: Vec<usize> = unproduced
        .into_iter()
        .filter(|&index| read_value(index) != initial)
        .collect();
    let Some(&first_bad) = bad.first() else {
        return Ok(initial);
    };
    // Each bad read's distinct value, for the reason.
    let mut values: BTreeMap<u32, usize> = BTreeMap::new();
    for &index in &bad {
        if let Some(value) = read_value(index) {
            *values.entry(value).or_default() += 1;
        }
    }
    let values: Vec<String> = values.keys().map(u32::to_string).collect();
    let initial_text = match initial {
        Some(value) => format!("the initial value is {value}"),
        None => "the initial value is unknown".to_string(),
    };
    Err(Violation::NotLinearizable {
        reason: format!(
            "{} read(s) returned a value no write produced ({}; {initial_text}, failed writes \
             do not count); the first is op {first_bad} by client {}",
            bad.len(),
            values.join(", "),
            history[first_bad].client,
        ),
        ops: bad
            .iter()
            .take(MAX_OPS_SHOWN)
            .map(|&index| history[index].clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::register_tests::op;

    #[test]
    fn drops_failed_ops_unanswered_reads_and_unseen_unknown_writes() {
        let history = [
            op(0, RegisterCall::Write(1), RegisterResult::WriteOk, 0, 10),
            op(1, RegisterCall::Write(2), RegisterResult::Failed, 0, 10),
            op(2, RegisterCall::Write(3), RegisterResult::Unknown, 5, 10),
            op(1, RegisterCall::Read, RegisterResult::Unknown, 20, 30),
            op(1, RegisterCall::Read, RegisterResult::Failed, 20, 30),
            op(0, RegisterCall::Read, RegisterResult::ReadOk(1), 20, 30),
        ];
        let prepared = prepare(&history, Some(0)).expect("prepared");
        let kept: Vec<usize> = prepared.ops.iter().map(|op| op.source).collect();
        assert_eq!(kept, vec![0, 5]);
        assert_eq!(prepared.initial, Some(0));
    }

    #[test]
    fn a_seen_unknown_write_ends_by_its_first_reader() {
        let history = [
            op(0, RegisterCall::Write(7), RegisterResult::Unknown, 5, 6),
            op(1, RegisterCall::Read, RegisterResult::ReadOk(7), 100, 300),
            op(2, RegisterCall::Read, RegisterResult::ReadOk(7), 50, 200),
        ];
        let prepared = prepare(&history, None).expect("prepared");
        assert_eq!(
            prepared.ops[0],
            PreparedOp {
                start: 5,
                end: 200,
                effect: Effect::Write(7),
                source: 0,
            }
        );
        assert_eq!(prepared.initial, None);
    }

    #[test]
    fn unknown_initial_value_is_named_by_the_first_unproduced_read() {
        let history = [
            op(0, RegisterCall::Read, RegisterResult::ReadOk(42), 0, 10),
            op(1, RegisterCall::Read, RegisterResult::ReadOk(42), 5, 10),
        ];
        assert_eq!(prepare(&history, None).expect("prepared").initial, Some(42));

        let history = [
            op(0, RegisterCall::Read, RegisterResult::ReadOk(42), 0, 10),
            op(1, RegisterCall::Read, RegisterResult::ReadOk(43), 5, 10),
        ];
        let Err(Violation::NotLinearizable { ops, .. }) = prepare(&history, None) else {
            panic!("two different unproduced values must be a violation");
        };
        assert_eq!(ops, vec![history[1].clone()]);
    }

    #[test]
    fn malformed_histories_are_reported_as_such() {
        let twice = [
            op(0, RegisterCall::Write(1), RegisterResult::WriteOk, 0, 10),
            op(1, RegisterCall::Write(1), RegisterResult::Unknown, 0, 10),
        ];
        assert!(matches!(
            prepare(&twice, Some(0)),
            Err(Violation::MalformedHistory { .. })
        ));
        let mismatched = [op(0, RegisterCall::Read, RegisterResult::WriteOk, 0, 10)];
        assert!(matches!(
            prepare(&mismatched, Some(0)),
            Err(Violation::MalformedHistory { .. })
        ));
        let backwards = [op(0, RegisterCall::Read, RegisterResult::ReadOk(0), 10, 5)];
        assert!(matches!(
            prepare(&backwards, Some(0)),
            Err(Violation::MalformedHistory { .. })
        ));
    }
}
