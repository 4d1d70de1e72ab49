//! `kdig` (Debian's knot-dnsutils) as the DNS tests' client: runs one query and parses the
//! status, flags and sections of its text output.

use std::net::SocketAddr;
use std::time::Duration;

/// One resource record as kdig prints it.
#[derive(Debug, Clone)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// A parsed kdig answer.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answers: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    pub raw: String,
}

impl Dig {
    /// The data of the answers of type `rtype`, sorted.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .answers
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        out.sort();
        out
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The SOA serial in the answer or authority section.
    pub fn soa_serial(&self) -> Option<u64> {
        self.answers
            .iter()
            .chain(&self.authority)
            .find(|r| r.rtype == "SOA")
            .and_then(|r| r.data.split_whitespace().nth(2)?.parse().ok())
    }
}

/// Queries `server` for `name`/`rtype` with kdig; `extra` are kdig options (`+tcp`, ...).
/// `Err` when kdig gets no answer.
pub async fn dig(
    server: SocketAddr,
    name: &str,
    rtype: &str,
    extra: &[&str],
) -> Result<Dig, String> {
    let mut command = tokio::process::Command::new("kdig");
    command
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=2", "+retry=1", "+norecurse"])
        .args(extra)
        .args([name, rtype])
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .map_err(|_| format!("kdig {name} {rtype} did not finish"))?
        .map_err(|e| format!("cannot run kdig (install knot-dnsutils): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    parse(&text).ok_or_else(|| {
        format!(
            "no DNS answer for {name} {rtype} {extra:?} from {server}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Queries `name`/`rtype` between two SOA queries for `zone` and returns the answer with the
/// SOA serial (the state version) it was given at. `Err` when the serial moved in between (the
/// answer may belong to either version) or when a query gets no answer.
pub async fn dig_at_serial(
    server: SocketAddr,
    zone: &str,
    name: &str,
    rtype: &str,
    extra: &[&str],
) -> Result<(u64, Dig), String> {
    let serial = |soa: Dig| {
        soa.soa_serial()
            .ok_or_else(|| format!("no SOA for {zone} from {server}: {}", soa.raw))
    };
    let before = serial(dig(server, zone, "SOA", extra).await?)?;
    let answer = dig(server, name, rtype, extra).await?;
    let after = serial(dig(server, zone, "SOA", extra).await?)?;
    if before != after {
        return Err(format!(
            "{server}: serial moved from {before} to {after} around {name} {rtype}"
        ));
    }
    Ok((after, answer))
}

fn parse(text: &str) -> Option<Dig> {
    let mut dig = Dig {
        raw: text.to_string(),
        ..Dig::default()
    };
    let mut section = "";
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            dig.status = rest
                .split(';')
                .find_map(|part| part.trim().strip_prefix("status:"))?
                .trim()
                .to_string();
        } else if let Some(rest) = line.strip_prefix(";; Flags:") {
            let flags = rest.split(';').next().unwrap_or("");
            dig.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL") {
            section = "additional";
        } else if line.starts_with(";;") || line.is_empty() {
            if line.starts_with(";; Received") {
                section = "";
            }
        } else if let Some(rr) = parse_rr(line) {
            match section {
                "answer" => dig.answers.push(rr),
                "authority" => dig.authority.push(rr),
                "additional" => dig.additional.push(rr),
                _ => {}
            }
        }
    }
    (!dig.status.is_empty()).then_some(dig)
}

fn parse_rr(line: &str) -> Option<Rr> {
    let mut words = line.split_whitespace();
    let name = words.next()?.to_string();
    let ttl = words.next()?.parse().ok()?;
    let _class = words.next()?;
    let rtype = words.next()?.to_string();
    let data = words.collect::<Vec<_>>().join(" ");
    Some(Rr {
        name,
        ttl,
        rtype,
        data,
    })
}
