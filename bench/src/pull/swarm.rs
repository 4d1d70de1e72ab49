//! The pullers of a run and the write-wake rounds they take part in.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::header::HeaderValue;
use kokoa_tests::write_index;
use serde_json::json;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::conn::{Command, Event, Outcome, Puller, Shared};
use super::ready::{self, Probe};
use super::report::{Errors, IdleRow, ReadyRow, RoundRow};
use super::{PullArgs, Target, POLL_EVERY};
use crate::host::{self, CpuSnap, PortSockets, ProcSnap};
use crate::note;

/// How long all connections may take to open.
const CONNECT_PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Every puller, the channel that arms them and the one they answer on.
pub(super) struct Swarm {
    pullers: JoinSet<()>,
    commands: watch::Sender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    pub(super) shared: Arc<Shared>,
    pulls: usize,
    pub(super) started: Instant,
}

impl Swarm {
    /// Spawns one puller per pull (they connect at once, `--connect-concurrency` at a time).
    pub(super) fn spawn(
        args: &PullArgs,
        addr: SocketAddr,
        edge_tokens: &[String],
    ) -> anyhow::Result<Swarm> {
        let auths = edge_tokens
            .iter()
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .collect::<Result<Vec<_>, _>>()
            .context("an edge token is not a valid header value")?;
        anyhow::ensure!(!auths.is_empty(), "no edge tokens");
        let (commands, receiver) = watch::channel(Command::Idle);
        let (sender, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let gate = Arc::new(Semaphore::new(args.connect_concurrency as usize));
        let mut pullers = JoinSet::new();
        for id in 0..args.pulls {
            let puller = Puller {
                id,
                addr,
                auth: auths[id as usize % auths.len()].clone(),
                wait_secs: args.wait_secs,
                commands: receiver.clone(),
                events: sender.clone(),
                shared: Arc::clone(&shared),
                connect_gate: Arc::clone(&gate),
            };
            pullers.spawn(puller.run());
        }
        Ok(Swarm {
            pullers,
            commands,
            events,
            shared,
            pulls: args.pulls as usize,
            started: Instant::now(),
        })
    }

    /// Waits until every puller has connected or failed to (bounded); errors when none could.
    pub(super) async fn wait_connected(&self, pulls: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + CONNECT_PHASE_TIMEOUT;
        loop {
            let connected = self.shared.connected.load(Ordering::Relaxed);
            let failed = self.shared.connect_failed.load(Ordering::Relaxed);
            if connected + failed >= pulls {
                anyhow::ensure!(
                    connected > 0,
                    "no connection could be opened: {:?}",
                    self.shared.samples()
                );
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "after {CONNECT_PHASE_TIMEOUT:?} only {connected} of {pulls} connections are open ({failed} failed)"
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// One write-wake cycle: arm with `after`, wait until all wait, idle window, write, answers.
    pub(super) async fn round(
        &mut self,
        args: &PullArgs,
        target: &Target<'_>,
        probe: Probe,
        round: u32,
        after: u64,
    ) -> anyhow::Result<RoundRow> {
        let mut answers = Answers::new(round, self.pulls);
        self.shared.new_round();
        let armed = Instant::now();
        self.commands.send_replace(Command::Arm { round, after });
        note!(
            "round {round}: armed {} pulls with after={after}, wait={} s",
            self.pulls,
            args.wait_secs
        );

        let ready = self
            .wait_ready(args, target, probe, armed, &mut answers)
            .await?;
        note!(
            "round {round}: {} after {:.1} s: {}",
            if ready.ok {
                "all waiting"
            } else {
                "NOT all waiting"
            },
            ready.secs,
            ready.detail
        );

        // Idle window.
        let idle_wall = Duration::from_secs(args.idle_secs);
        let box_before = CpuSnap::now();
        let proc_before = target.snap()?;
        let idle_started = Instant::now();
        tokio::time::sleep(idle_wall).await;
        let proc_after = target.snap()?;
        let idle_elapsed = idle_started.elapsed();
        let idle = IdleRow {
            secs: idle_elapsed.as_secs_f64(),
            rss_mib: proc_after.rss_mib(),
            cpu_pct: proc_after.cpu_pct_since(&proc_before, idle_elapsed),
            threads: proc_after.threads,
            box_busy_pct: box_before.and_then(|c| c.busy_pct_since()),
            steal_pct: box_before.and_then(|c| c.steal_pct_since()),
            bench_rss_mib: ProcSnap::read(std::process::id()).map(|p| p.rss_mib()),
        };
        note!(
            "round {round}: idle {:.1} s: replica RSS {:.1} MiB, CPU {:.2}% of a core, {} threads (box busy {}%, steal {}%)",
            idle.secs,
            idle.rss_mib,
            idle.cpu_pct,
            idle.threads,
            idle.box_busy_pct.map_or("-".into(), |v| format!("{v:.1}")),
            idle.steal_pct.map_or("-".into(), |v| format!("{v:.1}"))
        );
        answers.drain(&mut self.events);

        // The write.
        let box_before = CpuSnap::now();
        let proc_before = target.snap()?;
        let bench_before = ProcSnap::read(std::process::id());
        let hostname = format!(
            "r{round}-{}.pullbench.example.com",
            kokoa_tests::random_hex(4)
        );
        let body = json!({
            "hostname": hostname,
            "origin_id": target.origin_id,
            "target": "localhost:8080",
        });
        let sent = Instant::now();
        let response = target
            .http
            .post(format!("{}/api/v1/routes", target.base))
            .bearer_auth(&target.admin)
            .json(&body)
            .send()
            .await;
        let acked = Instant::now();
        let response = response.context("POST /api/v1/routes")?;
        let status = response.status();
        let index = write_index(response.headers());
        let text = response.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.as_u16() == 201,
            "round {round}: POST /api/v1/routes answered {status} {text}"
        );
        let write_ms = (acked - sent).as_secs_f64() * 1000.0;

        // The answers.
        let deadline = acked + Duration::from_secs(args.answer_timeout_secs);
        answers.collect(&mut self.events, deadline).await;
        let proc_after = target.snap()?;
        let bench_after = ProcSnap::read(std::process::id());
        let cpu_s = |before: &ProcSnap, after: &ProcSnap| {
            after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64
                / host::clock_ticks_per_sec() as f64
        };

        let mut row = RoundRow::new(round, after, self.pulls, ready);
        row.idle = Some(idle);
        row.write_ms = write_ms;
        row.write_index = index;
        row.repolls = self.shared.repolls.load(Ordering::Relaxed);
        row.after_rss_mib = Some(proc_after.rss_mib());
        row.peak_rss_mib = Some(proc_after.hwm_mib());
        row.after_threads = Some(proc_after.threads);
        row.wake_cpu_s = Some(cpu_s(&proc_before, &proc_after));
        row.bench_wake_cpu_s = bench_before
            .zip(bench_after)
            .map(|(before, after)| cpu_s(&before, &after));
        row.wake_box_busy_pct = box_before.and_then(|c| c.busy_pct_since());
        row.wake_steal_pct = box_before.and_then(|c| c.steal_pct_since());
        answers.judge(&mut row, sent, acked, index);
        note!(
            "round {round}: write {write_ms:.1} ms (index {}); {}/{} answered, {} errors; after the 201: p50 {} ms, p99 {} ms, max {} ms; {} before the 201",
            index.map_or("-".into(), |i| i.to_string()),
            row.answered,
            row.pulls,
            row.errors.total(),
            row.p50_ms.map_or("-".into(), |v| format!("{v:.1}")),
            row.p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
            row.max_ms.map_or("-".into(), |v| format!("{v:.1}")),
            row.before_ack
        );
        Ok(row)
    }

    /// Polls until every armed pull is waiting on the server (see [`ready`]) or the ready
    /// timeout passes; never fails for not being ready (the row says so), only when the replica
    /// is gone.
    async fn wait_ready(
        &mut self,
        args: &PullArgs,
        target: &Target<'_>,
        probe: Probe,
        armed: Instant,
        answers: &mut Answers,
    ) -> anyhow::Result<ReadyRow> {
        let deadline = armed + Duration::from_secs(args.ready_timeout_secs);
        // The socket condition held at this time, with the replica's CPU then.
        let mut holding: Option<(Instant, ProcSnap)> = None;
        loop {
            answers.drain(&mut self.events);
            let sent = self.shared.sent.load(Ordering::Relaxed);
            let unsent = self.shared.unsent.load(Ordering::Relaxed);
            let all_sent = sent + unsent >= self.pulls;
            // Pulls already answered (or failed) are not waiting.
            let expected = self.pulls.saturating_sub(answers.received);
            let now_snap = target.snap()?;
            let verdict = match probe {
                Probe::Metric => {
                    match ready::waiting_metric(&target.http, &target.base, &target.admin).await {
                        Some(waiting) if all_sent && waiting as usize >= expected => {
                            Ok(format!("{} {waiting} ≥ {expected}", ready::WAITING_METRIC))
                        }
                        seen => Err(format!(
                            "{} {}, want {expected}; sent {sent}/{}",
                            ready::WAITING_METRIC,
                            seen.map_or("unreadable".into(), |v| v.to_string()),
                            self.pulls
                        )),
                    }
                }
                Probe::Sockets => {
                    let sockets = PortSockets::read(target.port);
                    match ready::sockets_hold(all_sent, expected, &sockets) {
                        Err(missing) => {
                            holding = None;
                            Err(format!("sent {sent}/{}: {missing}", self.pulls))
                        }
                        Ok(()) => match holding {
                            Some((since, before)) if since.elapsed() >= ready::SETTLE => {
                                match ready::settled(&before, &now_snap, since.elapsed()) {
                                    Ok(()) => Ok(format!(
                                        "{} server-side connections, every request read, replica quiet for {} ms; {expected} expected waiting",
                                        sockets.server_side,
                                        since.elapsed().as_millis()
                                    )),
                                    Err(busy) => {
                                        holding = Some((Instant::now(), now_snap));
                                        Err(busy)
                                    }
                                }
                            }
                            Some(_) => Err("settling".into()),
                            None => {
                                holding = Some((Instant::now(), now_snap));
                                Err("settling".into())
                            }
                        },
                    }
                }
            };
            match verdict {
                Ok(detail) => {
                    return Ok(ReadyRow {
                        ok: true,
                        secs: armed.elapsed().as_secs_f64(),
                        detail,
                    })
                }
                Err(detail) if Instant::now() >= deadline => {
                    return Ok(ReadyRow {
                        ok: false,
                        secs: armed.elapsed().as_secs_f64(),
                        detail,
                    })
                }
                Err(_) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }

    /// Tells every puller to stop and waits (bounded) for them: every connection is closed.
    pub(super) async fn stop(&mut self) {
        self.commands.send_replace(Command::Stop);
        let all_done = async { while self.pullers.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), all_done)
            .await
            .is_err()
        {
            self.pullers.shutdown().await;
        }
    }
}

/// One round's answers, by puller.
struct Answers {
    round: u32,
    outcomes: Vec<Option<Outcome>>,
    received: usize,
}

impl Answers {
    fn new(round: u32, pulls: usize) -> Answers {
        Answers {
            round,
            outcomes: vec![None; pulls],
            received: 0,
        }
    }

    fn absorb(&mut self, event: Event) {
        if event.round != self.round {
            return;
        }
        if let Some(slot) = self.outcomes.get_mut(event.puller as usize) {
            if slot.is_none() {
                self.received += 1;
            }
            *slot = Some(event.outcome);
        }
    }

    /// Takes every event already there.
    fn drain(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) {
        while let Ok(event) = events.try_recv() {
            self.absorb(event);
        }
    }

    /// Takes events until every puller answered or `deadline`.
    async fn collect(&mut self, events: &mut mpsc::UnboundedReceiver<Event>, deadline: Instant) {
        while self.received < self.outcomes.len() {
            match tokio::time::timeout_at(deadline.into(), events.recv()).await {
                Ok(Some(event)) => self.absorb(event),
                Ok(None) | Err(_) => break,
            }
        }
        self.drain(events);
    }

    /// Fills `row`'s latencies and errors: the write was sent at `sent`, its 201 came at
    /// `acked` with log index `index`.
    fn judge(&self, row: &mut RoundRow, sent: Instant, acked: Instant, index: Option<u64>) {
        let mut errors = Errors::default();
        let mut from_ack = Vec::with_capacity(self.outcomes.len());
        let mut from_send = Vec::with_capacity(self.outcomes.len());
        for outcome in &self.outcomes {
            match outcome {
                None => errors.no_answer += 1,
                Some(Outcome::Transport { error, .. }) => {
                    errors.transport += 1;
                    errors.sample(format!("transport: {error}"));
                }
                Some(Outcome::Status { status, body, .. }) => {
                    errors.status += 1;
                    errors.sample(format!("HTTP {status}: {body}"));
                }
                Some(Outcome::Answered { at, .. }) if *at < sent => {
                    errors.early += 1;
                    errors.sample("200 before the write was sent".into());
                }
                Some(Outcome::Answered { at, version }) => {
                    let fresh = match (version, index) {
                        (Some(v), Some(i)) => *v >= i,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if fresh {
                        from_ack.push(signed_us(*at, acked));
                        from_send.push(signed_us(*at, sent));
                    } else {
                        errors.bad_version += 1;
                        errors.sample(format!(
                            "200 with version {version:?}, the write's index is {index:?}"
                        ));
                    }
                }
            }
        }
        if errors.no_answer > 0 {
            let message = format!(
                "{} pulls unanswered when the answer timeout passed",
                errors.no_answer
            );
            errors.sample(message);
        }
        row.errors = errors;
        row.set_latencies(from_ack, from_send);
    }
}

/// `at - reference` in µs, negative when `at` came first.
fn signed_us(at: Instant, reference: Instant) -> i64 {
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    if at >= reference {
        us(at - reference)
    } else {
        -us(reference - at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_each_pull_once() {
        let sent = Instant::now();
        let acked = sent + Duration::from_millis(4);
        let mut answers = Answers::new(2, 6);
        let event = |puller: u32, outcome: Outcome| Event {
            round: 2,
            puller,
            outcome,
        };
        let at = |ms: u64| sent + Duration::from_millis(ms);
        answers.absorb(event(
            0,
            Outcome::Answered {
                at: at(2),
                version: Some(9),
            },
        ));
        answers.absorb(event(
            1,
            Outcome::Answered {
                at: at(14),
                version: Some(9),
            },
        ));
        answers.absorb(event(
            2,
            Outcome::Answered {
                at: at(14),
                version: Some(8),
            },
        ));
        answers.absorb(event(
            3,
            Outcome::Status {
                at: at(5),
                status: 503,
                body: "behind".into(),
            },
        ));
        answers.absorb(Event {
            round: 1,
            ..event(
                4,
                Outcome::Transport {
                    at: at(1),
                    error: "old".into(),
                },
            )
        });
        assert_eq!(answers.received, 4);
        let ready = ReadyRow {
            ok: true,
            secs: 0.0,
            detail: String::new(),
        };
        let mut row = RoundRow::new(2, 8, 6, ready);
        answers.judge(&mut row, sent, acked, Some(9));
        assert_eq!(row.answered, 2);
        assert_eq!(row.before_ack, 1);
        assert_eq!(row.first_ms, Some(-2.0));
        assert_eq!(row.max_ms, Some(10.0));
        assert_eq!(row.max_from_send_ms, Some(14.0));
        let e = &row.errors;
        assert_eq!(
            (e.no_answer, e.status, e.bad_version, e.transport, e.early),
            (2, 1, 1, 0, 0)
        );
    }

    #[test]
    fn signed_microseconds() {
        let t = Instant::now();
        assert_eq!(signed_us(t + Duration::from_micros(1500), t), 1500);
        assert_eq!(signed_us(t, t + Duration::from_micros(1500)), -1500);
    }
}
