//! Availability: a success ratio (e.g. data-plane requests during a fault) at or above a
//! required one.

use super::Violation;

/// A [`Violation::Availability`] when `ok / total` is below `required` (a ratio in 0..=1).
/// Nothing attempted (`total == 0`) is no violation.
pub fn availability(what: &str, ok: u64, total: u64, required: f64) -> Option<Violation> {
    if total == 0 {
        return None;
    }
    let ratio = ok as f64 / total as f64;
    (ratio < required).then(|| Violation::Availability {
        what: what.to_string(),
        ok,
        total,
        required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_required_ratio_is_a_violation() {
        assert_eq!(
            availability("GET /", 94, 100, 0.95),
            Some(Violation::Availability {
                what: "GET /".into(),
                ok: 94,
                total: 100,
                required: 0.95,
            })
        );
        assert_eq!(
            availability("GET /", 0, 3, 0.5).map(|v| v.kind()),
            Some("availability")
        );
    }

    #[test]
    fn at_or_above_the_required_ratio_or_nothing_attempted_is_fine() {
        assert_eq!(availability("GET /", 95, 100, 0.95), None);
        assert_eq!(availability("GET /", 100, 100, 1.0), None);
        assert_eq!(availability("GET /", 0, 0, 1.0), None);
        assert_eq!(availability("GET /", 0, 10, 0.0), None);
    }
}
