//! Tests of the register check: small hand-made histories (valid ones, and planted stale or
//! impossible reads), uncertain writes, the state limit, agreement with a brute-force check of
//! the definition on random small histories, and large generated histories.

use super::*;
use crate::history::{RegisterCall, RegisterOp, RegisterResult};

/// One register operation (shared with the other register test modules).
pub(super) fn op(
    client: usize,
    call: RegisterCall,
    result: RegisterResult,
    start: u64,
    end: u64,
) -> RegisterOp {
    RegisterOp {
        client,
        call,
        result,
        start_us: start,
        end_us: end,
    }
}

/// An acknowledged write.
fn write(client: usize, value: u32, start: u64, end: u64) -> RegisterOp {
    op(
        client,
        RegisterCall::Write(value),
        RegisterResult::WriteOk,
        start,
        end,
    )
}

/// A write without an answer.
fn write_unknown(client: usize, value: u32, start: u64, end: u64) -> RegisterOp {
    op(
        client,
        RegisterCall::Write(value),
        RegisterResult::Unknown,
        start,
        end,
    )
}

/// A refused write.
fn write_failed(client: usize, value: u32, start: u64, end: u64) -> RegisterOp {
    op(
        client,
        RegisterCall::Write(value),
        RegisterResult::Failed,
        start,
        end,
    )
}

/// A read that returned `value`.
fn read(client: usize, value: u32, start: u64, end: u64) -> RegisterOp {
    op(
        client,
        RegisterCall::Read,
        RegisterResult::ReadOk(value),
        start,
        end,
    )
}

/// The ops a [`Violation::NotLinearizable`] shows, or a panic naming what came instead.
fn shown_ops(result: Result<LinearizabilityStats, Violation>) -> Vec<RegisterOp> {
    match result {
        Err(Violation::NotLinearizable { ops, .. }) => ops,
        other => panic!("expected not_linearizable, got {other:?}"),
    }
}

#[test]
fn sequential_histories_are_linearizable() {
    assert_eq!(
        linearizable(&[], None),
        Ok(LinearizabilityStats {
            ops_total: 0,
            ops_checked: 0,
            states_explored: 0,
        })
    );
    let history = [
        read(0, 0, 0, 5),
        write(0, 1, 10, 20),
        read(1, 1, 30, 40),
        write(1, 2, 50, 60),
        read(0, 2, 70, 80),
        read(1, 2, 90, 100),
    ];
    let stats = linearizable(&history, Some(0)).expect("linearizable");
    assert_eq!(stats.ops_total, 6);
    assert_eq!(stats.ops_checked, 6);
    // Unknown initial value: the first read names it.
    assert!(linearizable(&history, None).is_ok());
}

#[test]
fn reads_during_a_write_may_see_old_or_new_but_not_go_back() {
    let during = |first: u32, second: u32| {
        vec![
            write(0, 1, 0, 10),
            write(0, 2, 20, 1_000),
            read(1, first, 30, 40),
            read(1, second, 50, 60),
        ]
    };
    assert!(linearizable(&during(1, 1), Some(0)).is_ok());
    assert!(linearizable(&during(1, 2), Some(0)).is_ok());
    assert!(linearizable(&during(2, 2), Some(0)).is_ok());
    let back = during(2, 1);
    let ops = shown_ops(linearizable(&back, Some(0)));
    assert!(
        ops.contains(&back[3]),
        "the read going back is shown: {ops:?}"
    );
}

#[test]
fn concurrent_writes_may_be_seen_in_either_order() {
    let history = |first: u32, second: u32| {
        vec![
            write(0, 1, 0, 100),
            write(1, 2, 10, 90),
            read(2, first, 20, 30),
            read(2, second, 150, 160),
            read(0, second, 200, 210),
        ]
    };
    assert!(linearizable(&history(1, 2), Some(0)).is_ok());
    assert!(linearizable(&history(2, 1), Some(0)).is_ok());
    assert!(linearizable(&history(0, 1), Some(0)).is_ok());
    // Once both writes are done, later reads must agree.
    let disagree = vec![
        write(0, 1, 0, 100),
        write(1, 2, 10, 90),
        read(2, 1, 150, 160),
        read(0, 2, 200, 210),
    ];
    let ops = shown_ops(linearizable(&disagree, Some(0)));
    assert!(ops.contains(&disagree[3]), "{ops:?}");
}

#[test]
fn an_unknown_write_may_apply_late_or_never() {
    // Seen long after its request failed: applied late, fine.
    let seen = vec![
        write(0, 1, 0, 10),
        write_unknown(1, 2, 20, 30),
        read(0, 1, 40, 50),
        read(0, 2, 5_000, 5_010),
        read(2, 2, 6_000, 6_010),
    ];
    let stats = linearizable(&seen, Some(0)).expect("linearizable");
    assert_eq!(stats.ops_checked, 5);
    // Never seen: dropped.
    let unseen = vec![
        write(0, 1, 0, 10),
        write_unknown(1, 2, 20, 30),
        read(0, 1, 40, 50),
        read(2, 1, 6_000, 6_010),
    ];
    let stats = linearizable(&unseen, Some(0)).expect("linearizable");
    assert_eq!(stats.ops_checked, 3);
    // Seen, then the value before it again: impossible.
    let flip = vec![
        write(0, 1, 0, 10),
        write_unknown(1, 2, 20, 30),
        read(0, 2, 40, 50),
        read(2, 1, 60, 70),
    ];
    let ops = shown_ops(linearizable(&flip, Some(0)));
    assert!(ops.contains(&flip[3]), "{ops:?}");
    // Seen before its request was even sent: impossible.
    let early = vec![read(0, 2, 0, 10), write_unknown(1, 2, 20, 30)];
    assert!(shown_ops(linearizable(&early, Some(0))).contains(&early[0]));
}

#[test]
fn a_stale_read_is_caught() {
    // Client 2 reads 1 after the write of 2 was acknowledged (an old leader answering alone).
    let history = vec![
        write(0, 1, 0, 10),
        read(1, 1, 15, 18),
        write(0, 2, 20, 30),
        read(1, 2, 35, 38),
        read(2, 1, 40, 50),
        write(0, 3, 60, 70),
    ];
    let Err(Violation::NotLinearizable { reason, ops }) = linearizable(&history, Some(0)) else {
        panic!("the stale read must be caught");
    };
    assert!(reason.contains("client 2 read 1"), "{reason}");
    assert!(
        ops.contains(&history[4]),
        "the stale read is shown: {ops:?}"
    );
    assert!(
        ops.contains(&history[2]),
        "the write it missed is shown: {ops:?}"
    );
    assert!(ops.len() <= MAX_OPS_SHOWN);
}

#[test]
fn reading_a_value_never_written_is_caught() {
    let history = vec![write(0, 1, 0, 10), read(1, 7, 20, 30)];
    assert_eq!(
        shown_ops(linearizable(&history, Some(0))),
        vec![history[1].clone()]
    );
    // A failed write was not applied: reading its value is as bad.
    let failed = vec![write_failed(0, 1, 0, 10), read(1, 1, 20, 30)];
    assert_eq!(
        shown_ops(linearizable(&failed, Some(0))),
        vec![failed[1].clone()]
    );
    // With an unknown initial value, only one unwritten value may be read.
    let two = vec![read(0, 8, 0, 5), write(0, 1, 10, 20), read(1, 9, 30, 40)];
    assert_eq!(shown_ops(linearizable(&two, None)), vec![two[2].clone()]);
    // And the initial value cannot be read after a write replaced it.
    let after = vec![read(0, 8, 0, 5), write(0, 1, 10, 20), read(1, 8, 30, 40)];
    assert!(shown_ops(linearizable(&after, None)).contains(&after[2]));
}

#[test]
fn the_state_limit_gives_up_instead_of_running_forever() {
    // 20 concurrent writes, then two reads that cannot both be right: proving it means trying
    // every subset of the writes (about 20 * 2^19 states).
    let mut history: Vec<RegisterOp> = (1..=20).map(|value| write(0, value, 0, 100)).collect();
    history.push(read(1, 1, 200, 210));
    history.push(read(1, 2, 300, 310));
    assert_eq!(
        linearizable_within(&history, Some(0), 1_000),
        Err(Violation::CheckerGaveUp {
            what: "register linearizability".into(),
            states: 1_001,
            limit: 1_000,
        })
    );
}

/// A deterministic generator (splitmix64), so the tests need no seeded RNG crate.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A valid history of `count` ops from `clients` clients, each doing one op at a time with
/// overlapping durations: every op takes effect at a random point of its interval (a write of
/// unknown outcome possibly well after it, or never), against a real register starting at 0.
fn generated_history(
    seed: u64,
    clients: usize,
    count: usize,
    max_duration: u64,
) -> Vec<RegisterOp> {
    let mut rng = SplitMix(seed);
    let mut free_at: Vec<u64> = (0..clients).map(|_| rng.below(50)).collect();
    // (effect point, op index): None for ops that never take effect.
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut history = Vec::with_capacity(count);
    let mut next_value = 1;
    for index in 0..count {
        let (client, &free) = free_at
            .iter()
            .enumerate()
            .min_by_key(|&(client, &free)| (free, client))
            .expect("clients");
        let start = free + rng.below(20);
        let end = start + 1 + rng.below(max_duration);
        let roll = rng.below(100);
        let (call, result, effect) = if rng.below(2) == 0 {
            let value = next_value;
            next_value += 1;
            let (result, effect) = match roll {
                0..=3 => (RegisterResult::Failed, None),
                4..=6 => (RegisterResult::Unknown, None),
                7..=9 => (
                    RegisterResult::Unknown,
                    Some(start + rng.below(end - start + 500)),
                ),
                _ => (
                    RegisterResult::WriteOk,
                    Some(start + rng.below(end - start + 1)),
                ),
            };
            (RegisterCall::Write(value), result, effect)
        } else if roll < 5 {
            (RegisterCall::Read, RegisterResult::Unknown, None)
        } else {
            // The value is filled in below, once the effect order is known.
            let effect = start + rng.below(end - start + 1);
            (RegisterCall::Read, RegisterResult::ReadOk(0), Some(effect))
        };
        if let Some(at) = effect {
            effects.push((at, index));
        }
        history.push(op(client, call, result, start, end));
        free_at[client] = end;
    }
    effects.sort_unstable();
    let mut value = 0;
    for (_, index) in effects {
        match history[index].call {
            RegisterCall::Write(written) => value = written,
            RegisterCall::Read => history[index].result = RegisterResult::ReadOk(value),
        }
    }
    history
}

#[test]
fn a_generated_history_of_5000_ops_from_4_clients_checks_quickly() {
    for seed in [1, 2, 3] {
        let history = generated_history(seed, 4, 5_000, 200);
        let stats = linearizable(&history, Some(0)).expect("a valid history");
        assert_eq!(stats.ops_total, 5_000);
        assert!(stats.ops_checked > 4_000, "{stats:?}");
        assert!(stats.states_explored < 100_000, "{stats:?}");
        // Unknown initial value: no read returns anything but 0 or a written value.
        assert!(linearizable(&history, None).is_ok());
    }
}

/// Makes a read late in `history` return the value of an acknowledged write that another
/// acknowledged write followed, both before the read started; returns the changed read.
fn plant_stale_read(history: &mut [RegisterOp]) -> RegisterOp {
    // Two acknowledged writes in real-time order, then a read starting after both: make it
    // return the older value.
    let acked: Vec<usize> = (0..history.len())
        .filter(|&index| history[index].result == RegisterResult::WriteOk)
        .collect();
    let (older, stale) = acked
        .iter()
        .rev()
        .skip(100)
        .find_map(|&newer| {
            let older = acked
                .iter()
                .copied()
                .find(|&older| history[older].end_us < history[newer].start_us)?;
            let stale = (0..history.len()).find(|&index| {
                history[index].call == RegisterCall::Read
                    && matches!(history[index].result, RegisterResult::ReadOk(_))
                    && history[newer].end_us < history[index].start_us
            })?;
            Some((older, stale))
        })
        .expect("a place to plant a stale read");
    let RegisterCall::Write(old_value) = history[older].call else {
        panic!("acked ops are writes");
    };
    history[stale].result = RegisterResult::ReadOk(old_value);
    history[stale].clone()
}

#[test]
fn a_stale_read_planted_late_in_a_generated_history_is_caught() {
    let mut history = generated_history(7, 4, 5_000, 200);
    let planted = plant_stale_read(&mut history);
    let ops = shown_ops(linearizable(&history, Some(0)));
    assert!(ops.contains(&planted), "the planted read is shown: {ops:?}");
}

/// The definition, checked directly on a recorded history: some order of its ops, respecting
/// real time, where each read returns the latest write's value. Failed ops and unanswered reads
/// are left out; a write of unknown outcome is placed anywhere after its start, or left out.
fn brute_force(history: &[RegisterOp], initial: u32) -> bool {
    fn place(history: &[RegisterOp], remaining: u32, value: u32) -> bool {
        if remaining == 0 {
            return true;
        }
        let end = |op: &RegisterOp| match op.result {
            RegisterResult::Unknown => u64::MAX,
            _ => op.end_us,
        };
        let may_come_next = |i: usize| {
            (0..history.len()).all(|j| {
                j == i || remaining & (1 << j) == 0 || end(&history[j]) >= history[i].start_us
            })
        };
        (0..history.len())
            .filter(|&i| remaining & (1 << i) != 0 && may_come_next(i))
            .any(|i| {
                let rest = remaining & !(1 << i);
                match (history[i].call, history[i].result) {
                    (RegisterCall::Write(v), RegisterResult::WriteOk) => place(history, rest, v),
                    (RegisterCall::Write(v), RegisterResult::Unknown) => {
                        place(history, rest, v) || place(history, rest, value)
                    }
                    (RegisterCall::Read, RegisterResult::ReadOk(v)) => {
                        v == value && place(history, rest, value)
                    }
                    _ => place(history, rest, value),
                }
            })
    }
    place(history, (1 << history.len()) - 1, initial)
}

/// A random small history from 3 clients: writes of unique values, reads of any value (so
/// often impossible), some failed or unanswered.
fn random_small_history(rng: &mut SplitMix) -> Vec<RegisterOp> {
    let count = 1 + rng.below(9) as usize;
    let mut free_at = [0u64; 3];
    let mut next_value = 1;
    (0..count)
        .map(|_| {
            let client = rng.below(3) as usize;
            let start = free_at[client] + rng.below(30);
            let end = start + rng.below(40);
            free_at[client] = end + 1;
            let result_roll = rng.below(10);
            if rng.below(2) == 0 {
                let value = next_value;
                next_value += 1;
                let result = match result_roll {
                    0 => RegisterResult::Failed,
                    1..=2 => RegisterResult::Unknown,
                    _ => RegisterResult::WriteOk,
                };
                op(client, RegisterCall::Write(value), result, start, end)
            } else {
                let result = match result_roll {
                    0 => RegisterResult::Unknown,
                    _ => RegisterResult::ReadOk(rng.below(u64::from(next_value) + 1) as u32),
                };
                op(client, RegisterCall::Read, result, start, end)
            }
        })
        .collect()
}

#[test]
fn agrees_with_the_definition_on_small_random_histories() {
    let mut rng = SplitMix(99);
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..20_000 {
        let history = random_small_history(&mut rng);
        let expected = brute_force(&history, 0);
        let found = linearizable(&history, Some(0));
        assert_eq!(found.is_ok(), expected, "{history:?}: {found:?}");
        if let Err(violation) = found {
            assert_eq!(violation.kind(), "not_linearizable", "{violation}");
            invalid += 1;
        } else {
            valid += 1;
        }
    }
    assert!(
        valid > 2_000 && invalid > 2_000,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
#[ignore = "prints search statistics"]
fn search_statistics_on_generated_histories() {
    for max_duration in [200, 2_000, 20_000] {
        for seed in 1..=3 {
            let mut history = generated_history(seed, 4, 5_000, max_duration);
            let started = std::time::Instant::now();
            let valid = linearizable(&history, Some(0));
            let valid_took = started.elapsed();
            plant_stale_read(&mut history);
            let started = std::time::Instant::now();
            let prepared = super::register_prepare::prepare(&history, Some(0)).expect("prepared");
            let planted = match super::register_search::search(&prepared.ops, Some(0), u64::MAX) {
                super::register_search::Outcome::Impossible { states, .. } => states,
                other => panic!("{other:?}"),
            };
            println!(
                "max {max_duration}us seed {seed}: {valid:?} in {valid_took:?}; planted {planted:?} in {:?}",
                started.elapsed()
            );
        }
    }
}
