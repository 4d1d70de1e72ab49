//! The linearizability search over prepared register ops: a depth-first search in the style of
//! Wing & Gong, with Lowe's memoization of (set of linearized ops, register value).
//!
//! A state is the set of ops already linearized (a bitset over the ops sorted by start) and the
//! register's value. An unlinearized op may come next when no other unlinearized op must precede
//! it, i.e. when its start is at most the smallest end among the unlinearized ops.
//!
//! Two things keep it fast on long histories from a few clients:
//!
//! * Reads are never branched on. A read that may come next and returned the current value is
//!   linearized at once: if any linearization exists from this state, moving that read to its
//!   front keeps it valid (a read changes nothing, and no unlinearized op must precede it), so
//!   nothing is lost. Only writes are branched on, earliest end first.
//! * Each (set, value) state is explored once. The set is stored compactly: the number of leading
//!   all-ones words and the words after them up to the last non-zero one, which for a history with
//!   little concurrency is a word or two. Looking a state up allocates nothing.
//! * A value that no unlinearized read returned is remembered as "dead": what can follow a state
//!   depends on the register's value only through the reads still to place that return it, so
//!   all such values lead to the same outcomes. This folds together the many orders in which
//!   writes nobody reads (most of them, in a write-heavy run) can be placed.
//!
//! The search stops after a set number of states, so a pathological history cannot run forever.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::register_prepare::{Effect, PreparedOp};

/// How a search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every op was placed.
    Linearized { states: u64 },
    /// No order exists; `deepest` is the state that placed the most ops.
    Impossible { states: u64, deepest: Frontier },
    /// The state limit was reached first.
    GaveUp { states: u64 },
}

/// A state of the search, for reports: how many ops were placed, the register's value then, and
/// the ops (indexes into the prepared ops) that could have come next, none of which fit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Frontier {
    pub placed: usize,
    pub value: Option<u32>,
    pub next: Vec<usize>,
}

/// Searches for a linearization of `ops` (sorted by start) from `initial`, exploring at most
/// `max_states` states.
pub(crate) fn search(ops: &[PreparedOp], initial: Option<u32>, max_states: u64) -> Outcome {
    Search::new(ops, max_states).run(initial)
}

/// Which ops are linearized, one bit each.
#[derive(Debug, Clone)]
struct Bitset {
    words: Vec<u64>,
    len: usize,
}

/// The register's value in a memo key when no unlinearized read returns it.
const DEAD_VALUE: u64 = u64::MAX;

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    fn contains(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn insert(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn remove(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    /// The lowest bit not set (`len` when all are).
    fn first_unset(&self) -> usize {
        self.words
            .iter()
            .position(|&word| word != u64::MAX)
            .map_or(self.len, |word| {
                (word * 64 + self.words[word].trailing_ones() as usize).min(self.len)
            })
    }

    /// Appends the set's compact, exact form to `key`: the number of leading all-ones words,
    /// then the words after them up to the last non-zero one.
    fn append_key(&self, key: &mut Vec<u64>) {
        let full = self
            .words
            .iter()
            .position(|&word| word != u64::MAX)
            .unwrap_or(self.words.len());
        let used = self
            .words
            .iter()
            .rposition(|&word| word != 0)
            .map_or(0, |word| word + 1)
            .max(full);
        key.push(full as u64);
        key.extend_from_slice(&self.words[full..used]);
    }
}

/// One level of the depth-first search: what entering it linearized (to undo on the way back)
/// and the writes still to try from it.
#[derive(Debug)]
struct Level {
    /// The write placed to reach this level (none for the root).
    placed: Option<usize>,
    /// Reads linearized on entering, as they returned the value `placed` wrote.
    reads: Vec<usize>,
    /// Writes that may come next, in the order to try them, and how many were tried.
    writes: Vec<usize>,
    tried: usize,
}

/// A fast hasher for memo keys (multiply and rotate, as rustc's FxHash): they are machine words
/// the search makes itself, so no protection against crafted collisions is needed.
#[derive(Debug, Default)]
struct WordHasher {
    hash: u64,
}

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply mixes only upward; the table picks buckets from the low bits.
        self.hash.rotate_left(26)
    }
}

/// Explored states, each as a memo key: the register's value (or [`DEAD_VALUE`]), then the
/// linearized set's compact form.
type Seen = HashSet<Box<[u64]>, BuildHasherDefault<WordHasher>>;

/// What entering a state found.
#[derive(Debug)]
enum Entered {
    /// All ops are placed.
    Done,
    /// Seen before, or nothing can follow: back up (the entering reads are already undone).
    DeadEnd,
    /// A new level to explore.
    Level(Level),
    /// The state limit is reached.
    Limit,
}

#[derive(Debug)]
struct Search<'a> {
    ops: &'a [PreparedOp],
    max_states: u64,
    linearized: Bitset,
    placed: usize,
    /// Explored states: the register's value, dead when no unlinearized read returns it (or it
    /// is the unknown initial value), and the set of linearized ops.
    seen: Seen,
    /// Scratch space for a memo key.
    key: Vec<u64>,
    /// For each value some read returned, how many such reads are not linearized yet.
    unplaced_reads: HashMap<u32, usize>,
    states: u64,
    deepest: Frontier,
    /// Scratch space for the ops that may come next.
    next: Vec<usize>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [PreparedOp], max_states: u64) -> Search<'a> {
        let mut unplaced_reads = HashMap::new();
        for op in ops {
            if let Effect::Read(value) = op.effect {
                *unplaced_reads.entry(value).or_insert(0) += 1;
            }
        }
        Search {
            ops,
            max_states,
            linearized: Bitset::new(ops.len()),
            placed: 0,
            seen: Seen::default(),
            key: Vec::new(),
            unplaced_reads,
            states: 0,
            deepest: Frontier::default(),
            next: Vec::new(),
        }
    }

    fn run(mut self, initial: Option<u32>) -> Outcome {
        let mut levels: Vec<Level> = Vec::new();
        match self.enter(None, initial) {
            Entered::Done => return self.linearized_outcome(),
            Entered::Limit => return self.gave_up(),
            Entered::DeadEnd => return self.impossible(),
            Entered::Level(level) => levels.push(level),
        }
        while let Some(level) = levels.last_mut() {
            if let Some(&write) = level.writes.get(level.tried) {
                level.tried += 1;
                let Effect::Write(value) = self.ops[write].effect else {
                    continue; // only writes are listed
                };
                self.linearized.insert(write);
                self.placed += 1;
                match self.enter(Some(write), Some(value)) {
                    Entered::Done => return self.linearized_outcome(),
                    Entered::Limit => return self.gave_up(),
                    Entered::DeadEnd => {
                        self.linearized.remove(write);
                        self.placed -= 1;
                    }
                    Entered::Level(next) => levels.push(next),
                }
            } else if let Some(done) = levels.pop() {
                self.undo_reads(&done.reads);
                if let Some(write) = done.placed {
                    self.linearized.remove(write);
                    self.placed -= 1;
                }
            }
        }
        self.impossible()
    }

    /// Enters the state reached by placing `placed` (the register now holding `value`): places
    /// the reads that may come next and returned `value`, then decides what to do.
    fn enter(&mut self, placed: Option<usize>, value: Option<u32>) -> Entered {
        let reads = self.place_matching_reads(value);
        if self.placed == self.ops.len() {
            return Entered::Done;
        }
        if !self.remember(value) {
            self.undo_reads(&reads);
            return Entered::DeadEnd;
        }
        self.states += 1;
        if self.states > self.max_states {
            return Entered::Limit;
        }
        if self.placed > self.deepest.placed || self.states == 1 {
            self.deepest = Frontier {
                placed: self.placed,
                value,
                next: self.next.clone(),
            };
        }
        let mut writes: Vec<usize> = self
            .next
            .iter()
            .copied()
            .filter(|&op| matches!(self.ops[op].effect, Effect::Write(_)))
            .collect();
        if writes.is_empty() {
            self.undo_reads(&reads);
            return Entered::DeadEnd;
        }
        writes.sort_by_key(|&op| (self.ops[op].end, self.ops[op].start, op));
        Entered::Level(Level {
            placed,
            reads,
            writes,
            tried: 0,
        })
    }

    /// Records the current state (the linearized set and `value`); false if it was seen before.
    fn remember(&mut self, value: Option<u32>) -> bool {
        let live = value.filter(|v| self.unplaced_reads.get(v).is_some_and(|&n| n > 0));
        self.key.clear();
        self.key.push(live.map_or(DEAD_VALUE, u64::from));
        self.linearized.append_key(&mut self.key);
        if self.seen.contains(self.key.as_slice()) {
            return false;
        }
        self.seen.insert(self.key.as_slice().into());
        true
    }

    /// Linearizes every read that may come next and returned `value`, until none is left
    /// (placing one may let more come next). Leaves `next` filled for the resulting state.
    fn place_matching_reads(&mut self, value: Option<u32>) -> Vec<usize> {
        let mut reads = Vec::new();
        let Some(value) = value else {
            // An unknown initial value, which no read returned.
            self.fill_next();
            return reads;
        };
        loop {
            self.fill_next();
            let before = reads.len();
            for &op in &self.next {
                if self.ops[op].effect == Effect::Read(value) {
                    self.linearized.insert(op);
                    reads.push(op);
                }
            }
            let placed_now = reads.len() - before;
            if placed_now == 0 {
                return reads;
            }
            self.placed += placed_now;
            if let Some(unplaced) = self.unplaced_reads.get_mut(&value) {
                *unplaced -= placed_now;
            }
        }
    }

    fn undo_reads(&mut self, reads: &[usize]) {
        for &op in reads {
            self.linearized.remove(op);
            if let Effect::Read(value) = self.ops[op].effect {
                if let Some(unplaced) = self.unplaced_reads.get_mut(&value) {
                    *unplaced += 1;
                }
            }
        }
        self.placed -= reads.len();
    }

    /// Sets `next` to the unlinearized ops that may come next: those starting at or before the
    /// smallest end among unlinearized ops. Ops are sorted by start, so the scan stops at the
    /// first op starting after the smallest end so far (its end, and all later ones, are larger).
    fn fill_next(&mut self) {
        self.next.clear();
        let mut smallest_end = u64::MAX;
        for op in self.linearized.first_unset()..self.ops.len() {
            if self.ops[op].start > smallest_end {
                break;
            }
            if !self.linearized.contains(op) {
                smallest_end = smallest_end.min(self.ops[op].end);
                self.next.push(op);
            }
        }
        let ops = self.ops;
        self.next.retain(|&op| ops[op].start <= smallest_end);
    }

    fn linearized_outcome(&self) -> Outcome {
        Outcome::Linearized {
            states: self.states,
        }
    }

    fn gave_up(&self) -> Outcome {
        Outcome::GaveUp {
            states: self.states,
        }
    }

    fn impossible(self) -> Outcome {
        Outcome::Impossible {
            states: self.states,
            deepest: self.deepest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(set: &Bitset) -> Vec<u64> {
        let mut key = Vec::new();
        set.append_key(&mut key);
        key
    }

    #[test]
    fn bitset_keys_are_compact_and_exact() {
        let mut set = Bitset::new(200);
        assert_eq!(set.first_unset(), 0);
        assert_eq!(key(&set), vec![0]);
        for bit in 0..70 {
            set.insert(bit);
        }
        assert_eq!(set.first_unset(), 70);
        assert_eq!(key(&set), vec![1, (1 << 6) - 1]);
        set.insert(130);
        assert_eq!(key(&set), vec![1, (1 << 6) - 1, 1 << 2]);
        set.remove(130);
        for bit in 70..200 {
            set.insert(bit);
        }
        assert_eq!(set.first_unset(), 200);
        assert!(set.contains(199));
        // 200 bits: three full words and a partial last one.
        assert_eq!(key(&set), vec![3, (1 << 8) - 1]);
    }

    #[test]
    fn ops_may_come_next_until_the_smallest_end() {
        let write = |start, end, value| PreparedOp {
            start,
            end,
            effect: Effect::Write(value),
            source: 0,
        };
        // 0: [0,10]  1: [5,50]  2: [11,20] (after 0)  3: [12,13] (after 0)
        let ops = [
            write(0, 10, 1),
            write(5, 50, 2),
            write(11, 20, 3),
            write(12, 13, 4),
        ];
        let mut search = Search::new(&ops, 10);
        search.fill_next();
        assert_eq!(search.next, vec![0, 1]);
        search.linearized.insert(0);
        search.fill_next();
        assert_eq!(search.next, vec![1, 2, 3]);
    }
}
