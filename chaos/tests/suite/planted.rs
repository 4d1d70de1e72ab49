//! The checkers against recorded histories with planted faults (tests/histories/*.json): each
//! fault is reported as exactly the expected violation, and the clean history as none.

use kokoa_chaos::check::{RecordedHistory, Violation};
use kokoa_chaos::history::{RegisterCall, RegisterOp, RegisterResult};

/// Loads `tests/histories/NAME.json`.
fn load(name: &str) -> RecordedHistory {
    let path = format!("{}/tests/histories/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// A register op as the files spell them.
fn register_op(
    client: usize,
    call: RegisterCall,
    result: RegisterResult,
    start_us: u64,
    end_us: u64,
) -> RegisterOp {
    RegisterOp {
        client,
        call,
        result,
        start_us,
        end_us,
    }
}

#[test]
fn lost_write_history_reports_the_write_missing_on_one_replica() {
    let report = load("lost_write").check();
    assert_eq!(
        report.violations,
        vec![Violation::LostWrite {
            what: "route:r2".into(),
            index: 9,
            replica: "3".into(),
        }]
    );
}

#[test]
fn stale_read_history_is_not_linearizable() {
    let history = load("stale_read");
    let report = history.check();
    let [Violation::NotLinearizable { reason, ops }] = report.violations.as_slice() else {
        panic!(
            "expected exactly one not_linearizable, got {:?}",
            report.violations
        );
    };
    assert_eq!(report.register, None);
    // Client 2 reads 2 after the write of 3 was acknowledged (and after client 1 read 3).
    let stale_read = register_op(2, RegisterCall::Read, RegisterResult::ReadOk(2), 4300, 4600);
    let missed_write = register_op(
        0,
        RegisterCall::Write(3),
        RegisterResult::WriteOk,
        3000,
        4100,
    );
    assert!(reason.contains("client 2 read 2"), "{reason}");
    assert!(
        ops.contains(&stale_read),
        "the stale read is shown: {ops:?}"
    );
    assert!(
        ops.contains(&missed_write),
        "the write it missed is shown: {ops:?}"
    );
    assert!(ops.iter().all(|op| history.register.contains(op)));
    assert!(ops.len() <= kokoa_chaos::check::MAX_OPS_SHOWN);

    // The same history without the stale read is fine.
    let mut fixed = history.clone();
    fixed.register.retain(|op| *op != stale_read);
    assert_eq!(fixed.check().violations, Vec::new());
}

#[test]
fn version_regression_history_reports_the_regression() {
    let report = load("version_regression").check();
    assert_eq!(
        report.violations,
        vec![Violation::VersionRegression {
            who: "edge:e2".into(),
            from: 2,
            to: 1,
            line: 15,
        }]
    );
}

#[test]
fn clean_history_passes_every_check() {
    let history = load("clean");
    // Every section is there, so a typo'd or emptied file cannot pass by checking nothing.
    assert!(!history.acks.is_empty());
    assert_eq!(history.replicas.len(), 3);
    assert!(!history.register.is_empty());
    assert!(!history.versions.is_empty());
    assert!(!history.availability.is_empty());

    let report = history.check();
    assert_eq!(report.violations, Vec::new());
    let stats = report.register.expect("register stats");
    assert_eq!(stats.ops_total, history.register.len());
    // The failed write, the unanswered read and the unseen write of unknown outcome are dropped.
    assert_eq!(stats.ops_checked, history.register.len() - 3);
}

#[test]
fn reports_round_trip_through_json() {
    let report = load("lost_write").check();
    let json = serde_json::to_value(&report).expect("serialize");
    assert_eq!(json["violations"][0]["kind"], "lost_write");
    let back: kokoa_chaos::check::CheckReport = serde_json::from_value(json).expect("parse");
    assert_eq!(back, report);
}
