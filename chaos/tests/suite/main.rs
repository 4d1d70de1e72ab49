//! The chaos suite's tests: the checkers against planted faults, partitions between real
//! replicas, and the short chaos run.

mod partition;
mod planted;
mod short;
