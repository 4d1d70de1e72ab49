//! Config versions never go backwards: each edge and agent applies versions in non-decreasing
//! order, across restarts.

use std::collections::BTreeMap;

use super::Violation;
use crate::history::VersionObs;

/// Per `who`, in the given order: a version lower than the highest one seen before is a
/// [`Violation::VersionRegression`] (from that highest version). Equal is fine: a restart
/// re-serves the config it saved. Every observation below the high-water mark is reported, so
/// `5, 3, 4` gives two regressions (5 to 3, 5 to 4).
pub fn monotonic_versions(observations: &[VersionObs]) -> Vec<Violation> {
    let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
    let mut violations = Vec::new();
    for obs in observations {
        let high = highest.entry(obs.who.as_str()).or_insert(obs.version);
        if obs.version < *high {
            violations.push(Violation::VersionRegression {
                who: obs.who.clone(),
                from: *high,
                to: obs.version,
                line: obs.line,
            });
        } else {
            *high = obs.version;
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(who: &str, version: u64, line: usize) -> VersionObs {
        VersionObs {
            who: who.to_string(),
            version,
            line,
        }
    }

    #[test]
    fn non_decreasing_versions_and_restarts_are_clean() {
        let observations = [
            obs("edge:e1", 1, 1),
            obs("agent:a1", 7, 1),
            obs("edge:e1", 2, 5),
            obs("edge:e1", 2, 9), // restarted, re-served its saved config
            obs("agent:a1", 9, 4),
            obs("edge:e1", 4, 12),
        ];
        assert!(monotonic_versions(&observations).is_empty());
        assert!(monotonic_versions(&[]).is_empty());
    }

    #[test]
    fn regressions_are_reported_per_who_against_the_high_water_mark() {
        let observations = [
            obs("edge:e1", 5, 3),
            obs("edge:e2", 2, 3), // another edge: not a regression of e1
            obs("edge:e1", 3, 8),
            obs("edge:e1", 4, 9),
            obs("edge:e1", 6, 10),
        ];
        assert_eq!(
            monotonic_versions(&observations),
            vec![
                Violation::VersionRegression {
                    who: "edge:e1".into(),
                    from: 5,
                    to: 3,
                    line: 8,
                },
                Violation::VersionRegression {
                    who: "edge:e1".into(),
                    from: 5,
                    to: 4,
                    line: 9,
                },
            ]
        );
    }
}
