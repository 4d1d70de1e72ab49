//! The steady workload a run keeps up while faults come and go, and what it records:
//! writes (DNS records and routes) with each acknowledgement's index, a register (the
//! `dns_ttl` setting) written and read by several clients, HTTP requests through every edge
//! to both origin apps, and DNS queries to every replica. Every loop is paced and ends when the
//! workload is stopped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::HOST;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::deployment::{ApiUrls, DIRECT_HOST, TUNNEL_HOST, ZONE};
use crate::history::{Ack, RegisterCall, RegisterOp, RegisterResult};
use crate::targets::Targets;
use kokoa_tests::error_chain;

/// How long one API call may take before its outcome counts as unknown.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one HTTP request through an edge may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two writes of one writer.
const WRITE_PACE: Duration = Duration::from_millis(200);
/// Pause between two register operations of one client.
const REGISTER_PACE: Duration = Duration::from_millis(100);
/// Pause between two HTTP requests of one (edge, host) loop.
const HTTP_PACE: Duration = Duration::from_millis(100);
/// Pause between two rounds of DNS queries.
const DNS_PACE: Duration = Duration::from_millis(500);
/// Writers and register clients.
const WRITERS: usize = 2;
const REGISTER_CLIENTS: usize = 3;
/// Every this many writes, a route instead of a DNS record (routes change the edges' config).
const ROUTE_EVERY: u64 = 5;
/// First value the register clients write (values are unique: base + n * clients + client).
const REGISTER_BASE: u32 = 1000;

/// Microseconds since the run started.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// One HTTP request through an edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSample {
    pub edge: u64,
    pub host: String,
    pub start_us: u64,
    pub end_us: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// One DNS query to a replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsSample {
    pub replica: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Everything the workload saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recorded {
    pub acks: Vec<Ack>,
    /// Writes not acknowledged (refused, failed or without an answer).
    pub writes_unacknowledged: u64,
    pub register: Vec<RegisterOp>,
    pub http: Vec<HttpSample>,
    pub dns: Vec<DnsSample>,
    /// Samples set aside because their target was taken out while they were in flight.
    pub http_set_aside: u64,
    pub dns_set_aside: u64,
}

/// Where the workload sends things.
#[derive(Debug, Clone)]
pub struct WorkloadTargets {
    pub api: ApiUrls,
    /// Replica id -> its DNS address.
    pub dns: Targets,
    /// Edge number (1-based) -> its plain-HTTP address.
    pub edges: Targets,
    pub admin_token: String,
    /// The direct origin's id (routes the writers add lead there).
    pub direct_origin_id: String,
    pub direct_target: String,
    /// The settings object the register clients write, varying `dns_ttl`.
    pub settings: Value,
    /// The origin apps' names per host, to check who answered.
    pub apps: Vec<(String, String)>,
}

/// The running workload.
#[derive(Debug)]
pub struct Workload {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    recorded: Arc<Mutex<Recorded>>,
}

impl Workload {
    /// Starts every loop; `seed` drives the register clients' choices.
    pub fn start(targets: WorkloadTargets, clock: Clock, seed: u64) -> Workload {
        let (stop, stopped) = watch::channel(false);
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let api = api_client(&targets.admin_token);
        let http = http_client();
        let mut tasks = JoinSet::new();
        let ctx = Ctx {
            targets: Arc::new(targets),
            clock,
            recorded: recorded.clone(),
            stopped,
        };
        for w in 0..WRITERS {
            tasks.spawn(writer(ctx.clone(), api.clone(), w));
        }
        for c in 0..REGISTER_CLIENTS {
            tasks.spawn(register_client(ctx.clone(), api.clone(), c, seed));
        }
        for (host, app) in ctx.targets.apps.clone() {
            tasks.spawn(http_loop(ctx.clone(), http.clone(), host, app));
        }
        tasks.spawn(dns_loop(ctx.clone()));
        Workload {
            stop,
            tasks,
            recorded,
        }
    }

    /// Stops every loop (each finishes its request in flight) and returns what was recorded.
    pub async fn stop(mut self) -> Recorded {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        recorded.clone()
    }
}

#[derive(Debug, Clone)]
struct Ctx {
    targets: Arc<WorkloadTargets>,
    clock: Clock,
    recorded: Arc<Mutex<Recorded>>,
    stopped: watch::Receiver<bool>,
}

impl Ctx {
    fn record(&self, f: impl FnOnce(&mut Recorded)) {
        f(&mut self.recorded.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Waits `pace`; false once the workload is stopped.
    async fn pause(&mut self, pace: Duration) -> bool {
        if *self.stopped.borrow() {
            return false;
        }
        tokio::select! {
            _ = self.stopped.changed() => false,
            _ = tokio::time::sleep(pace) => !*self.stopped.borrow(),
        }
    }

    /// The API URL for the `n`th call of client `who`: the clients spread over the replicas.
    fn api_url(&self, who: usize, n: u64) -> Option<String> {
        let urls = self.targets.api.get();
        (!urls.is_empty()).then(|| urls[(who + n as usize) % urls.len()].clone())
    }
}

/// The HTTP client for the API: admin token, bounded time, no proxy.
fn api_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = format!("Bearer {token}").parse() {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(API_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default()
}

/// The HTTP client for requests through the edges.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default()
}

/// `GET url` (with `host` as the Host header) and the name of the origin app that answered
/// (its JSON `origin`).
pub async fn get_origin(
    http: &reqwest::Client,
    url: &str,
    host: Option<&str>,
) -> Result<String, String> {
    let mut request = http.get(url);
    if let Some(host) = host {
        request = request.header(HOST, host);
    }
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| error_chain(&e))?;
    if !status.is_success() {
        // The edge's error pages are HTML: their text, on one short line.
        let text = String::from_utf8_lossy(&body[..body.len().min(600)]).replace('\n', " ");
        let title = text
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split('<').next())
            .unwrap_or("");
        return Err(format!("HTTP {status} {title}").trim_end().to_string());
    }
    let json: Value = serde_json::from_slice(&body).map_err(|_| "not JSON".to_string())?;
    json["origin"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no origin in the answer".to_string())
}

/// What an API call's answer says about whether its write took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 2xx: the body and the index it was committed at.
    Done(Value, Option<u64>),
    /// Certainly not applied: refused (4xx) or never delivered (connection refused).
    Failed,
    /// Maybe applied: no answer in time, or an error after it may have been committed.
    Unknown,
}

async fn call(request: reqwest::RequestBuilder) -> Outcome {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let index = kokoa_tests::write_index(response.headers());
            if status.is_success() {
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Outcome::Done(body, index)
            } else if status.is_client_error() {
                Outcome::Failed
            } else {
                Outcome::Unknown
            }
        }
        Err(e) if e.is_connect() => Outcome::Failed,
        Err(_) => Outcome::Unknown,
    }
}

/// Adds DNS records (and every [`ROUTE_EVERY`]th time a route), one at a time, recording each
/// acknowledgement.
async fn writer(mut ctx: Ctx, api: reqwest::Client, w: usize) {
    let mut n: u64 = 0;
    while ctx.pause(WRITE_PACE).await {
        n += 1;
        let Some(url) = ctx.api_url(w, n) else {
            continue;
        };
        let (kind, path, body) = if n % ROUTE_EVERY == 0 {
            let body = json!({
                "hostname": format!("r-{w}-{n}.{ZONE}"),
                "origin_id": ctx.targets.direct_origin_id,
                "target": ctx.targets.direct_target,
                "allow_http": true,
            });
            ("route", "/api/v1/routes", body)
        } else {
            let body = json!({
                "name": format!("w-{w}-{n}.{ZONE}"),
                "type": "TXT",
                "value": format!("chaos write {w}-{n}"),
            });
            ("dns", "/api/v1/dns/records", body)
        };
        let sent_us = ctx.clock.now_us();
        let outcome = call(api.post(format!("{url}{path}")).json(&body)).await;
        let at_us = ctx.clock.now_us();
        ctx.record(|r| match outcome {
            Outcome::Done(json, Some(index)) => match json["id"].as_str() {
                Some(id) => r.acks.push(Ack {
                    what: format!("{kind}:{id}"),
                    index,
                    sent_us,
                    at_us,
                }),
                None => r.writes_unacknowledged += 1,
            },
            _ => r.writes_unacknowledged += 1,
        });
    }
}

/// Reads and writes the register (`dns_ttl`) with linearizable reads, recording every
/// operation's call, result and times.
async fn register_client(mut ctx: Ctx, api: reqwest::Client, c: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x5eed_0000 + c as u64));
    let mut n: u64 = 0;
    let mut writes: u32 = 0;
    while ctx.pause(REGISTER_PACE).await {
        n += 1;
        let Some(url) = ctx.api_url(c, n) else {
            continue;
        };
        let url = format!("{url}/api/v1/settings");
        let start_us = ctx.clock.now_us();
        let (call_made, result) = if rng.gen_bool(0.5) {
            let value = REGISTER_BASE + writes * REGISTER_CLIENTS as u32 + c as u32;
            writes += 1;
            let mut body = ctx.targets.settings.clone();
            body["dns_ttl"] = json!(value);
            let result = match call(api.put(&url).json(&body)).await {
                Outcome::Done(..) => RegisterResult::WriteOk,
                Outcome::Failed => RegisterResult::Failed,
                Outcome::Unknown => RegisterResult::Unknown,
            };
            (RegisterCall::Write(value), result)
        } else {
            let result = match call(api.get(&url)).await {
                Outcome::Done(json, _) => json["dns_ttl"]
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .map_or(RegisterResult::Unknown, RegisterResult::ReadOk),
                Outcome::Failed => RegisterResult::Failed,
                Outcome::Unknown => RegisterResult::Unknown,
            };
            (RegisterCall::Read, result)
        };
        let end_us = ctx.clock.now_us();
        ctx.record(|r| {
            r.register.push(RegisterOp {
                client: c,
                call: call_made,
                result,
                start_us,
                end_us,
            })
        });
    }
}

/// Requests `host` through every edge in turn, checking the right app answers.
async fn http_loop(mut ctx: Ctx, http: reqwest::Client, host: String, app: String) {
    let mut n: u64 = 0;
    while ctx.pause(HTTP_PACE).await {
        for (edge, addr, generation) in ctx.targets.edges.snapshot() {
            n += 1;
            let url = format!("http://{addr}/chaos/{n}");
            let start_us = ctx.clock.now_us();
            let answer = get_origin(&http, &url, Some(&host)).await;
            let end_us = ctx.clock.now_us();
            let error = match answer {
                Ok(name) if name == app => None,
                Ok(name) => Some(format!("answered by {name}, not {app}")),
                Err(e) => Some(e),
            };
            let counted = ctx.targets.edges.unchanged(edge, generation);
            ctx.record(|r| {
                if counted {
                    r.http.push(HttpSample {
                        edge,
                        host: host.clone(),
                        start_us,
                        end_us,
                        ok: error.is_none(),
                        error,
                    });
                } else {
                    r.http_set_aside += 1;
                }
            });
        }
    }
}

/// Asks every replica that is in for the direct route's A records.
async fn dns_loop(mut ctx: Ctx) {
    while ctx.pause(DNS_PACE).await {
        let mut queries = JoinSet::new();
        for (replica, addr, generation) in ctx.targets.dns.snapshot() {
            let clock = ctx.clock;
            queries.spawn(async move {
                let start_us = clock.now_us();
                let answer = crate::dns::query_a(addr, DIRECT_HOST).await;
                let end_us = clock.now_us();
                let error = match answer {
                    Ok(ips) if !ips.is_empty() => None,
                    Ok(_) => Some("no A record".to_string()),
                    Err(e) => Some(e),
                };
                (replica, generation, start_us, end_us, error)
            });
        }
        while let Some(done) = queries.join_next().await {
            let Ok((replica, generation, start_us, end_us, error)) = done else {
                continue;
            };
            let counted = ctx.targets.dns.unchanged(replica, generation);
            ctx.record(|r| {
                if counted {
                    r.dns.push(DnsSample {
                        replica,
                        start_us,
                        end_us,
                        ok: error.is_none(),
                        error,
                    });
                } else {
                    r.dns_set_aside += 1;
                }
            });
        }
    }
}

/// The hosts the HTTP loops request and the app that must answer each.
pub fn hosts(direct_app: &str, tunnel_app: &str) -> Vec<(String, String)> {
    vec![
        (DIRECT_HOST.to_string(), direct_app.to_string()),
        (TUNNEL_HOST.to_string(), tunnel_app.to_string()),
    ]
}
