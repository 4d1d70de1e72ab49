//! The UI's HTML: the sign-in page, the dashboard and its sections, message pages, and
//! [`escape`], through which every value that reaches a page goes.
//!
//! What the dashboard shows is read with the JSON API's own list handlers (one read barrier,
//! then local reads), so the UI shows exactly what the API answers.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kokoa_raft::ClusterStatus;
use kokoa_store::{DnsRecord, Origin, OriginKind, Subject};

use super::session::{Flash, Session, CSRF_FIELD};
use super::{html, unavailable, Site};
use crate::api::agents::AgentView;
use crate::api::edges::EdgeView;
use crate::api::routes::{OriginStatus, RouteView};
use crate::api::tokens::TokenView;
use crate::extract::ReadMode;
use crate::{api, ApiContext, ApiError};

/// An agent seen this recently counts as connected.
const AGENT_ONLINE_WITHIN: u64 = 120;

/// HTML-escapes `s` for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything the dashboard shows.
#[derive(Debug)]
pub struct Dashboard {
    pub now: u64,
    /// This replica's URL as the browser sees it.
    pub base_url: String,
    pub csrf: String,
    /// The admin token of this session (marked in the token list).
    pub session_token_id: String,
    /// Set when the read barrier failed and the page shows this replica's local state.
    pub stale_reason: Option<String>,
    pub cluster: ClusterStatus,
    pub edges: Vec<EdgeView>,
    pub origins: Vec<Origin>,
    pub agents: Vec<AgentView>,
    pub routes: Vec<RouteView>,
    pub tokens: Vec<TokenView>,
    pub dns_records: Vec<DnsRecord>,
}

impl Dashboard {
    /// Reads everything through the API's handlers: linearizable (one read barrier, then local
    /// reads), or this replica's local state with a warning when there is no leader to ask.
    pub async fn load(ctx: &ApiContext, site: &Site, session: &Session) -> Result<Self, ApiError> {
        let stale_reason = ctx.node.read_barrier().await.err().map(|e| e.to_string());
        let local = ReadMode { stale: true };
        let state = || State(ctx.clone());
        Ok(Dashboard {
            now: crate::auth::unix_now(),
            base_url: site.base_url.clone(),
            csrf: session.csrf_token().to_string(),
            session_token_id: session.token_id.clone(),
            stale_reason,
            cluster: api::cluster::status(state()).await?.0,
            edges: api::edges::list(state(), local).await?.0.items,
            origins: api::origins::list(state(), local).await?.0.items,
            agents: api::agents::list(state(), local).await?.0.items,
            routes: api::routes::list(state(), local).await?.0.items,
            tokens: api::tokens::list(state(), local).await?.0.items,
            dns_records: api::dns::list(state(), local).await?.0.items,
        })
    }

    /// The public IPs of the registered edges, without repeats.
    pub fn edge_ips(&self) -> Vec<String> {
        edge_ips(&self.edges)
    }
}

/// The distinct public IPs of `edges`, sorted.
pub fn edge_ips(edges: &[EdgeView]) -> Vec<String> {
    edges
        .iter()
        .map(|e| e.edge.public_ip.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The DNS records a user creates by hand for `hostname`: one A (or AAAA) line per edge.
pub fn dns_hint(hostname: &str, edge_ips: &[String]) -> Vec<String> {
    edge_ips
        .iter()
        .map(|ip| {
            let rtype = if ip.contains(':') { "AAAA" } else { "A" };
            format!("{hostname} {rtype} {ip}")
        })
        .collect()
}

/// Loads and renders the dashboard with `flash` on top, answered with `status`.
pub async fn dashboard_response(
    ctx: &ApiContext,
    site: &Site,
    session: &Session,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    match Dashboard::load(ctx, site, session).await {
        Ok(d) => html(status, dashboard(&d, flash.as_ref())),
        Err(e) => unavailable(&e),
    }
}

const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#24292f;color:#fff;padding:.6rem 1.5rem;display:flex;align-items:center;gap:1rem}
header h1{font-size:1.15rem;margin:0;letter-spacing:.02em}
header .meta{color:#c9d1d9;font-size:.85rem;flex:1}
main{max-width:1200px;margin:0 auto;padding:.5rem 1.5rem 3rem}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}
h2{font-size:1.05rem;margin:0 0 .6rem}
h2 small{color:var(--muted);font-weight:400;font-size:.85rem;margin-left:.4rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:.8rem;text-transform:uppercase;letter-spacing:.03em}
tr:last-child td{border-bottom:0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
td code{background:var(--bg);padding:0 .3rem;border-radius:4px}
p code{white-space:nowrap}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.5rem .75rem;white-space:pre-wrap;overflow-wrap:anywhere;user-select:all;margin:.25rem 0 .6rem}
.badge{display:inline-block;padding:0 .5rem;border-radius:999px;font-size:.75rem;border:1px solid var(--line);color:var(--muted);white-space:nowrap}
.badge.ok{color:var(--ok);border-color:#4ac26b;background:#dafbe1}
.badge.bad{color:var(--bad);border-color:#ff8182;background:#ffebe9}
.badge.warn{color:var(--warn);border-color:#d4a72c;background:#fff8c5}
.badge.lead{color:#fff;border-color:#0969da;background:#0969da}
form{margin:0}
form.add{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-end;margin-top:.8rem;padding-top:.8rem;border-top:1px dashed var(--line)}
label{display:flex;flex-direction:column;font-size:.78rem;color:var(--muted);gap:.15rem}
input,select{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);border-radius:6px;background:#fff;color:var(--fg);min-width:8rem}
input:focus,select:focus{outline:2px solid #0969da33;border-color:#0969da}
button{font:inherit;padding:.3rem .9rem;border-radius:6px;border:1px solid #1a7f37;background:#1f883d;color:#fff;cursor:pointer}
button:hover{background:#1a7f37}
button.danger{background:#fff;color:var(--bad);border-color:var(--line);padding:.05rem .55rem;font-size:.8rem}
button.danger:hover{background:#ffebe9;border-color:#ff8182}
button.plain{background:transparent;border-color:#6e7781;color:#fff;padding:.15rem .7rem;font-size:.85rem}
.flash{border-radius:8px;padding:.75rem 1rem;margin:1rem 0;border:1px solid}
.flash.ok{background:#dafbe1;border-color:#4ac26b}
.flash.error{background:#ffebe9;border-color:#ff8182}
.flash .label{font-size:.8rem;color:var(--muted);margin-top:.4rem}
.muted{color:var(--muted)}
.empty{color:var(--muted);font-style:italic;margin:.25rem 0}
.stats{display:flex;flex-wrap:wrap;gap:.6rem;margin-bottom:.8rem}
.stat{background:var(--bg);border-radius:6px;padding:.35rem .8rem;min-width:7rem}
.stat span{display:block;font-size:.75rem;color:var(--muted)}
.stat b{font-size:1.05rem}
.login{max-width:440px;margin:12vh auto}
.login form{display:flex;flex-direction:column;gap:.8rem}
.login input{width:100%}
"#;

/// A whole HTML document.
fn layout(title: &str, header: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>\
         <body><header><h1>Kokoa</h1>{header}</header><main>{body}</main></body></html>\n",
        escape(title)
    )
}

fn flash_box(flash: Option<&Flash>) -> String {
    let Some(flash) = flash else {
        return String::new();
    };
    let class = if flash.error { "error" } else { "ok" };
    let mut out = format!(
        "<div class=\"flash {class}\" id=\"flash\" role=\"status\">{}",
        escape(&flash.text)
    );
    for (label, value) in &flash.blocks {
        let _ = write!(
            out,
            "<div class=\"label\">{}</div><pre>{}</pre>",
            escape(label),
            escape(value)
        );
    }
    out.push_str("</div>");
    out
}

/// A page with a title, a message and a way back.
pub fn message(title: &str, text: &str) -> String {
    let body = format!(
        "<section class=\"login\"><h2>{}</h2><p>{}</p><p><a href=\"/\">Back to the dashboard</a></p></section>",
        escape(title),
        escape(text)
    );
    layout(title, "", &body)
}

/// The sign-in page.
pub fn login(flash: Option<&Flash>) -> String {
    let body = format!(
        "<div class=\"login\">{}<section><h2>Sign in</h2>\
         <form method=\"post\" action=\"/ui/login\" id=\"login-form\">\
         <label>Admin token<input type=\"password\" name=\"token\" autocomplete=\"off\" \
         required autofocus placeholder=\"kokoa.…\"></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">The admin token was printed when the cluster was initialised and \
         is kept in <code>DATA_DIR/admin.token</code> on the first replica. Make more with \
         <code>kokoa token create --role admin</code>.</p></section></div>",
        flash_box(flash)
    );
    layout("Sign in · Kokoa", "", &body)
}

/// The hidden CSRF field of every form.
fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
        escape(csrf)
    )
}

/// A one-button form posting to `action` (deletes and revokes).
fn button_form(action: &str, csrf: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"danger\">{}</button></form>",
        escape(action),
        csrf_field(csrf),
        escape(label)
    )
}

/// "42 s ago", with the UTC time as a tooltip.
fn ago(now: u64, t: u64) -> String {
    let d = now.saturating_sub(t);
    let text = if d < 5 {
        "just now".to_string()
    } else {
        format!("{} ago", span(d))
    };
    format!("<span title=\"{}\">{}</span>", utc(t), escape(&text))
}

/// "in 3 h", or "expired".
fn until(now: u64, t: u64) -> String {
    let text = if t <= now {
        "expired".to_string()
    } else {
        format!("in {}", span(t - now))
    };
    format!("<span title=\"{}\">{}</span>", utc(t), escape(&text))
}

fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds `t`.
fn utc(t: u64) -> String {
    // Days to civil date (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", escape(text))
}

/// The dashboard page.
pub fn dashboard(d: &Dashboard, flash: Option<&Flash>) -> String {
    let header = format!(
        "<span class=\"meta\">replica {} · {}</span>\
         <form method=\"post\" action=\"/ui/logout\">{}<button type=\"submit\" class=\"plain\">Sign out</button></form>",
        d.cluster.node_id,
        escape(d.cluster.state),
        csrf_field(&d.csrf)
    );
    let mut body = flash_box(flash);
    if let Some(reason) = &d.stale_reason {
        let _ = write!(
            body,
            "<div class=\"flash error\">This replica cannot reach a leader ({}): showing its \
             local state, which may be behind. Changes will fail until a leader is elected.</div>",
            escape(reason)
        );
    }
    body.push_str(&cluster_section(d));
    body.push_str(&edges_section(d));
    body.push_str(&origins_section(d));
    body.push_str(&routes_section(d));
    body.push_str(&tokens_section(d));
    body.push_str(&dns_section(d));
    layout("Kokoa", &header, &body)
}

fn stat(label: &str, value: &str) -> String {
    format!(
        "<div class=\"stat\"><span>{}</span><b>{}</b></div>",
        escape(label),
        escape(value)
    )
}

fn cluster_section(d: &Dashboard) -> String {
    let c = &d.cluster;
    let leader = c
        .leader_id
        .map_or_else(|| "none".to_string(), |id| format!("replica {id}"));
    let mut out = format!(
        "<section id=\"cluster\"><h2>Cluster</h2><div class=\"stats\">{}{}{}{}{}</div>",
        stat("Leader", &leader),
        stat("Term", &c.term.to_string()),
        stat("Applied index", &c.applied_index.to_string()),
        stat("State version", &c.version.to_string()),
        stat("Replicas", &c.members.len().to_string()),
    );
    out.push_str(
        "<table><thead><tr><th>Replica</th><th>Role</th><th>API address</th>\
         <th>Peer address</th></tr></thead><tbody>",
    );
    for m in &c.members {
        let role = if Some(m.id) == c.leader_id {
            badge("lead", "leader")
        } else if m.voter {
            badge("", "voter")
        } else {
            badge("warn", "learner")
        };
        let this = if m.id == c.node_id {
            " <span class=\"muted\">(this replica)</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td>{}{this}</td><td>{role}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            m.id,
            escape(&m.api_addr),
            escape(&m.peer_addr)
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

fn edges_section(d: &Dashboard) -> String {
    let mut out = format!(
        "<section id=\"edges\"><h2>Edges<small>{} registered</small></h2>",
        d.edges.len()
    );
    if d.edges.is_empty() {
        out.push_str(
            "<p class=\"empty\">No edge has registered yet. Create an <b>edge</b> token below \
             and run the command it shows on a public server.</p></section>",
        );
        return out;
    }
    out.push_str(
        "<table><thead><tr><th>Name</th><th>Public IP</th><th>Tunnel IP</th><th>Health</th>\
         <th>Last seen</th><th></th></tr></thead><tbody>",
    );
    for e in &d.edges {
        let health = match e.health {
            "healthy" => badge("ok", "healthy"),
            "unhealthy" => badge("bad", "unhealthy"),
            other => badge("", other),
        };
        let health = match (e.health_since, &e.health_reason) {
            (Some(since), Some(reason)) => format!(
                "{health}<br><span class=\"muted\">{} · {}</span>",
                escape(reason),
                ago(d.now, since)
            ),
            _ => health,
        };
        let seen = e
            .last_seen
            .map_or_else(|| badge("warn", "never"), |t| ago(d.now, t));
        let _ = write!(
            out,
            "<tr data-name=\"{}\"><td>{}<br><span class=\"muted\">{}</span></td><td><code>{}</code></td>\
             <td><code>{}</code></td><td>{health}</td><td>{seen}</td><td>{}</td></tr>",
            escape(&e.edge.name),
            escape(&e.edge.name),
            escape(&e.edge.id),
            escape(&e.edge.public_ip),
            escape(e.edge.tunnel_ip.as_deref().unwrap_or("—")),
            button_form(&format!("/ui/edges/{}/delete", e.edge.id), &d.csrf, "Remove"),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The tunnel column of an origin: how many agents, and when one was last seen.
fn tunnel_status(d: &Dashboard, origin: &Origin) -> String {
    if origin.kind == OriginKind::Direct {
        return "<span class=\"muted\">direct: edges dial the target</span>".to_string();
    }
    let agents: Vec<&AgentView> = d
        .agents
        .iter()
        .filter(|a| a.agent.origin_id == origin.id)
        .collect();
    if agents.is_empty() {
        return badge("warn", "no agent yet");
    }
    let count = format!(
        "{} agent{}",
        agents.len(),
        if agents.len() == 1 { "" } else { "s" }
    );
    match agents.iter().filter_map(|a| a.last_seen).max() {
        Some(t) if d.now.saturating_sub(t) <= AGENT_ONLINE_WITHIN => {
            format!("{} last seen {}", badge("ok", &count), ago(d.now, t))
        }
        Some(t) => format!("{} last seen {}", badge("warn", &count), ago(d.now, t)),
        None => format!("{} never seen", badge("warn", &count)),
    }
}

fn origins_section(d: &Dashboard) -> String {
    let mut out = format!(
        "<section id=\"origins\"><h2>Origins<small>where services run</small></h2>{}",
        if d.origins.is_empty() {
            "<p class=\"empty\">No origin yet.</p>".to_string()
        } else {
            String::new()
        }
    );
    if !d.origins.is_empty() {
        out.push_str(
            "<table><thead><tr><th>Name</th><th>Kind</th><th>Subnet</th><th>Tunnel</th>\
             <th>Routes</th><th></th></tr></thead><tbody>",
        );
        for o in &d.origins {
            let routes = d
                .routes
                .iter()
                .filter(|r| r.route.origin_id == o.id)
                .count();
            let kind = match o.kind {
                OriginKind::Tunnel => "tunnel",
                OriginKind::Direct => "direct",
            };
            let _ = write!(
                out,
                "<tr data-name=\"{}\"><td>{}<br><span class=\"muted\">{}</span></td><td>{kind}</td>\
                 <td><code>{}</code></td><td>{}</td><td>{routes}</td><td>{}</td></tr>",
                escape(&o.name),
                escape(&o.name),
                escape(&o.id),
                escape(o.subnet.as_deref().unwrap_or("—")),
                tunnel_status(d, o),
                button_form(&format!("/ui/origins/{}/delete", o.id), &d.csrf, "Delete"),
            );
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/ui/origins\" class=\"add\" id=\"origin-form\">{}\
         <label>Name<input name=\"name\" required maxlength=\"63\" placeholder=\"home-server\"></label>\
         <label>Kind<select name=\"kind\"><option value=\"tunnel\">tunnel (agent dials out)</option>\
         <option value=\"direct\">direct (edges dial it)</option></select></label>\
         <button type=\"submit\">Add origin</button></form></section>",
        csrf_field(&d.csrf)
    );
    out
}

fn origin_options(d: &Dashboard, blank: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(blank) = blank {
        let _ = write!(out, "<option value=\"\">{}</option>", escape(blank));
    }
    for o in &d.origins {
        let _ = write!(
            out,
            "<option value=\"{}\">{}</option>",
            escape(&o.id),
            escape(&o.name)
        );
    }
    out
}

/// A route's origin status as a badge, naming the edges that cannot reach it.
fn origin_status(view: &RouteView, edge_names: &HashMap<&str, &str>) -> String {
    let status = match view.origin_status {
        OriginStatus::Reachable => return badge("ok", "reachable"),
        OriginStatus::Unknown => return badge("", "unknown"),
        OriginStatus::Degraded => badge("warn", "degraded"),
        OriginStatus::Unreachable => badge("bad", "origin unreachable"),
    };
    let names: Vec<&str> = view
        .unreachable_from
        .iter()
        .map(|id| edge_names.get(id.as_str()).copied().unwrap_or(id))
        .collect();
    format!(
        "{status}<br><span class=\"muted\">not from {}</span>",
        escape(&names.join(", "))
    )
}

fn routes_section(d: &Dashboard) -> String {
    let names: HashMap<&str, &str> = d
        .origins
        .iter()
        .map(|o| (o.id.as_str(), o.name.as_str()))
        .collect();
    let ips = d.edge_ips();
    let mut out = String::from(
        "<section id=\"routes\"><h2>Routes<small>public hostnames and where they lead</small></h2>",
    );
    if d.routes.is_empty() {
        out.push_str("<p class=\"empty\">No route yet.</p>");
    } else {
        out.push_str(
            "<table><thead><tr><th>Hostname</th><th>Origin</th><th>Target</th>\
             <th>Reached by the edges</th>\
             <th>DNS records to create at your provider</th><th></th></tr></thead><tbody>",
        );
        let edge_names: HashMap<&str, &str> = d
            .edges
            .iter()
            .map(|e| (e.edge.id.as_str(), e.edge.name.as_str()))
            .collect();
        for view in &d.routes {
            let r = &view.route;
            let reach = origin_status(view, &edge_names);
            let hint = if ips.is_empty() {
                "<span class=\"muted\">no edge registered yet</span>".to_string()
            } else {
                dns_hint(&r.hostname, &ips)
                    .iter()
                    .map(|line| format!("<code>{}</code>", escape(line)))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = write!(
                out,
                "<tr data-name=\"{}\"><td><b>{}</b></td><td>{}</td><td><code>{}</code></td>\
                 <td>{reach}</td><td>{hint}</td><td>{}</td></tr>",
                escape(&r.hostname),
                escape(&r.hostname),
                escape(
                    names
                        .get(r.origin_id.as_str())
                        .copied()
                        .unwrap_or(&r.origin_id)
                ),
                escape(&r.target),
                button_form(&format!("/ui/routes/{}/delete", r.id), &d.csrf, "Delete"),
            );
        }
        out.push_str("</tbody></table>");
    }
    if d.origins.is_empty() {
        out.push_str("<p class=\"muted\">Add an origin first; routes lead to an origin.</p>");
    } else {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/routes\" class=\"add\" id=\"route-form\">{}\
             <label>Hostname<input name=\"hostname\" required placeholder=\"app.example.com\"></label>\
             <label>Origin<select name=\"origin_id\" required>{}</select></label>\
             <label>Target (seen from the origin)<input name=\"target\" required placeholder=\"localhost:8080\"></label>\
             <button type=\"submit\">Add route</button></form>",
            csrf_field(&d.csrf),
            origin_options(d, None)
        );
    }
    out.push_str("</section>");
    out
}

/// "origin home", "edge e_…", "agent …": what a token is bound to, by name where known.
fn subject_label(d: &Dashboard, subject: &Subject) -> String {
    match subject {
        Subject::Origin(id) => format!(
            "origin {}",
            d.origins
                .iter()
                .find(|o| &o.id == id)
                .map_or(id.as_str(), |o| o.name.as_str())
        ),
        Subject::Edge(id) => format!(
            "edge {}",
            d.edges
                .iter()
                .find(|e| &e.edge.id == id)
                .map_or(id.as_str(), |e| e.edge.name.as_str())
        ),
        Subject::Agent(id) => format!(
            "agent {}",
            d.agents
                .iter()
                .find(|a| &a.agent.id == id)
                .map_or(id.as_str(), |a| a.agent.name.as_str())
        ),
    }
}

fn token_status(d: &Dashboard, t: &TokenView) -> String {
    if t.revoked {
        badge("bad", "revoked")
    } else if t.expires_at.is_some_and(|e| e <= d.now) {
        badge("bad", "expired")
    } else if t.max_uses.is_some_and(|m| t.uses >= m) {
        badge("warn", "used up")
    } else {
        badge("ok", "active")
    }
}

fn tokens_section(d: &Dashboard) -> String {
    let mut out = String::from(
        "<section id=\"tokens\"><h2>Tokens<small>secrets are shown once, when made</small></h2>",
    );
    out.push_str(
        "<table><thead><tr><th>ID</th><th>Role</th><th>Bound to</th><th>Created</th>\
         <th>Expires</th><th>Uses</th><th>Status</th><th></th></tr></thead><tbody>",
    );
    for t in &d.tokens {
        let you = if t.id == d.session_token_id {
            " <span class=\"badge\">this session</span>"
        } else {
            ""
        };
        let uses = match t.max_uses {
            Some(m) => format!("{} / {m}", t.uses),
            None => t.uses.to_string(),
        };
        let revoke = if t.revoked {
            String::new()
        } else {
            button_form(&format!("/ui/tokens/{}/revoke", t.id), &d.csrf, "Revoke")
        };
        let _ = write!(
            out,
            "<tr data-id=\"{}\"><td><code>{}</code>{you}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
            escape(&t.id),
            escape(&t.id),
            escape(t.role.as_str()),
            t.subject
                .as_ref()
                .map_or_else(|| "—".to_string(), |s| escape(&subject_label(d, s))),
            ago(d.now, t.created_at),
            t.expires_at
                .map_or_else(|| "never".to_string(), |e| until(d.now, e)),
            escape(&uses),
            token_status(d, t),
        );
    }
    out.push_str("</tbody></table>");
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/ui/tokens\" class=\"add\" id=\"token-form\">{}\
         <label>Role<select name=\"role\"><option value=\"edge\">edge (register an edge)</option>\
         <option value=\"agent\">agent (register an origin's agent)</option>\
         <option value=\"admin\">admin (API, CLI, this UI)</option>\
         <option value=\"server\">server (join a replica)</option></select></label>\
         <label>Lifetime<input name=\"ttl\" placeholder=\"e.g. 1h, 7d (blank: none)\"></label>\
         <label>Max uses<input name=\"max_uses\" inputmode=\"numeric\" placeholder=\"blank: unlimited\"></label>\
         <label>Origin (agent tokens)<select name=\"origin_id\">{}</select></label>\
         <button type=\"submit\">Create token</button></form></section>",
        csrf_field(&d.csrf),
        origin_options(d, Some("—"))
    );
    out
}

fn dns_section(d: &Dashboard) -> String {
    let mut out = String::from(
        "<section id=\"dns\"><h2>DNS records<small>static records for the built-in DNS</small></h2>",
    );
    if d.dns_records.is_empty() {
        out.push_str("<p class=\"empty\">No static record.</p>");
    } else {
        out.push_str(
            "<table><thead><tr><th>Name</th><th>Type</th><th>Value</th><th>TTL</th><th></th>\
             </tr></thead><tbody>",
        );
        for r in &d.dns_records {
            let _ = write!(
                out,
                "<tr data-name=\"{}\"><td><code>{}</code></td><td>{:?}</td><td><code>{}</code></td>\
                 <td>{} s</td><td>{}</td></tr>",
                escape(&r.name),
                escape(&r.name),
                r.rtype,
                escape(&r.value),
                r.ttl,
                button_form(&format!("/ui/dns/{}/delete", r.id), &d.csrf, "Delete"),
            );
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/ui/dns\" class=\"add\" id=\"dns-form\">{}\
         <label>Name<input name=\"name\" required placeholder=\"www or @\"></label>\
         <label>Type<select name=\"type\"><option>A</option><option>AAAA</option>\
         <option>CNAME</option><option>TXT</option></select></label>\
         <label>Value<input name=\"value\" required placeholder=\"192.0.2.10\"></label>\
         <label>TTL (s)<input name=\"ttl\" inputmode=\"numeric\" placeholder=\"30\"></label>\
         <button type=\"submit\">Add record</button></form></section>",
        csrf_field(&d.csrf)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain.example.com"), "plain.example.com");
    }

    #[test]
    fn formats_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert!(ago(100, 58).contains("42 s ago"));
        assert!(until(100, 7300).contains("in 2 h"));
        assert!(until(100, 50).contains("expired"));
    }

    #[test]
    fn dns_hints_list_every_edge() {
        let ips = vec!["192.0.2.1".to_string(), "2001:db8::1".to_string()];
        assert_eq!(
            dns_hint("app.example.com", &ips),
            vec![
                "app.example.com A 192.0.2.1",
                "app.example.com AAAA 2001:db8::1"
            ]
        );
    }

    #[test]
    fn flash_values_are_escaped() {
        let flash = Flash::error("<script>x</script>").with_block("cmd", "a & b");
        let html = login(Some(&flash));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("a &amp; b"));
    }
}
