//! Waiting for a condition instead of sleeping for a guessed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often conditions are re-checked.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some(value)`, and returns that value.
///
/// # Panics
/// When `timeout` passes first, naming `what`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_ok(what, timeout, || {
        let fut = check();
        async move { fut.await.ok_or_else(|| "condition not met".to_string()) }
    })
    .await
}

/// Polls `check` until it returns `Ok(value)`, and returns that value.
///
/// `Err(reason)` says why the condition does not hold yet; the last reason is in the panic.
///
/// # Panics
/// When `timeout` passes first, naming `what` and the last reason.
pub async fn wait_until_ok<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until_ok_every(what, timeout, POLL_EVERY, check).await
}

/// [`wait_until_ok`], re-checking every `every` (for conditions whose timing is measured).
///
/// # Panics
/// When `timeout` passes first, naming `what` and the last reason.
pub async fn wait_until_ok_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    try_wait_until_ok_every(what, timeout, every, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`wait_until_ok`] without the panic: `Err` naming `what` and the last reason when
/// `timeout` passes first (for programs that report rather than abort, such as the chaos run).
pub async fn try_wait_until_ok<T, F, Fut>(
    what: &str,
    timeout: Duration,
    check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    try_wait_until_ok_every(what, timeout, POLL_EVERY, check).await
}

async fn try_wait_until_ok_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let attempt = check().await;
        match attempt {
            Ok(value) => return Ok(value),
            Err(reason) if started.elapsed() >= timeout => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; last: {reason}"
                ))
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
