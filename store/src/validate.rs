//! Input validation and normalisation: hostnames, targets, names, ids.
//!
//! Everything here is pure and deterministic, so the same checks run at the API edge (to answer
//! 400 before anything is proposed) and again inside `apply` (defence in depth).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest accepted hostname, in ASCII (RFC 1035: 253 characters without the final dot).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest label inside a hostname.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest origin or edge name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest record id.
pub const MAX_ID_LEN: usize = 64;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("invalid hostname {0:?}: {1}")]
    Hostname(String, String),
    #[error("invalid target {0:?}: {1}")]
    Target(String, String),
    #[error("invalid name {0:?}: must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")]
    Name(String),
    #[error("invalid id {0:?}")]
    Id(String),
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    #[error("a batch of commands may not contain another batch")]
    Nested,
    #[error("invalid WireGuard public key: expected 32 bytes in base64")]
    WgKey,
    #[error("invalid pool {0:?}: {1}")]
    Pool(String, String),
    #[error("invalid DNS record: {0}")]
    DnsRecord(String),
    #[error("invalid IP address {0:?}")]
    Ip(String),
    #[error("invalid rate limit: {0}")]
    RateLimit(String),
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("invalid settings: {0}")]
    Settings(String),
}

impl ValidationError {
    /// A stable, machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::Hostname(..) => "invalid_hostname",
            ValidationError::Target(..) => "invalid_target",
            ValidationError::Name(_) => "invalid_name",
            ValidationError::Id(_) => "invalid_id",
            ValidationError::Address(..) => "invalid_address",
            ValidationError::Nested => "invalid_batch",
            ValidationError::WgKey => "invalid_wg_key",
            ValidationError::Pool(..) => "invalid_pool",
            ValidationError::DnsRecord(_) => "invalid_dns_record",
            ValidationError::Ip(_) => "invalid_ip",
            ValidationError::RateLimit(_) => "invalid_rate_limit",
            ValidationError::Certificate(_) => "invalid_certificate",
            ValidationError::Settings(_) => "invalid_settings",
        }
    }
}

/// Normalises a public hostname: trims a final dot, lowercases, converts IDNA to ASCII, and
/// accepts one leading `*.` wildcard label. It must have at least two labels and must not be
/// an IP address.
pub fn normalize_hostname(input: &str) -> Result<String, ValidationError> {
    let bad = |why: &str| ValidationError::Hostname(input.to_string(), why.to_string());
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    let (wildcard, rest) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    if rest.contains('*') {
        return Err(bad("'*' is only allowed as the whole first label"));
    }
    let ascii = idna::domain_to_ascii_strict(rest).map_err(|_| bad("not a valid domain name"))?;
    check_dns_name(&ascii, false).map_err(|why| bad(&why))?;
    if !ascii.contains('.') {
        return Err(bad("needs at least two labels, like app.example.com"));
    }
    let last = ascii.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("an IP address is not a hostname"));
    }
    let full = if wildcard {
        format!("*.{ascii}")
    } else {
        ascii
    };
    if full.len() > MAX_HOSTNAME_LEN {
        return Err(bad("longer than 253 characters"));
    }
    Ok(full)
}

/// Checks LDH syntax of an ASCII DNS name (labels 1-63 chars of a-z0-9 and inner '-'; '_' too
/// when `allow_underscore`, as private service names like `my_app` use it).
fn check_dns_name(name: &str, allow_underscore: bool) -> Result<(), String> {
    if name.len() > MAX_HOSTNAME_LEN {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("a label is longer than 63 characters".into());
        }
        if !label.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || (allow_underscore && b == b'_')
        }) {
            return Err("labels may hold only a-z, 0-9 and '-'".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'".into());
        }
    }
    Ok(())
}

/// Validates a forwarding target `HOST:PORT`: HOST is a DNS name (one label allowed, such as
/// `localhost`), an IPv4 address or a bracketed IPv6 address; PORT is 1-65535.
/// Returns the normalised (lowercase) form.
pub fn normalize_target(input: &str) -> Result<String, ValidationError> {
    let bad = |why: &str| ValidationError::Target(input.to_string(), why.to_string());
    let (host, port) = input
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
    if port == 0 {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = v6.parse().map_err(|_| bad("invalid IPv6 address"))?;
        return Ok(format!("[{ip}]:{port}"));
    }
    if host.contains(':') {
        return Err(bad("an IPv6 address must be in brackets, like [::1]:8080"));
    }
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(format!("{ip}:{port}"));
    }
    let host = host.to_ascii_lowercase();
    check_dns_name(&host, true).map_err(|why| bad(&why))?;
    Ok(format!("{host}:{port}"))
}

/// Validates an origin or edge name.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Name(name.to_string()))
    }
}

/// A valid name made from free text (a host name, an IP address): lowercased, every character
/// but `a-z`, `0-9`, `-` and `_` turned into `-`, cut to [`MAX_NAME_LEN`]; `None` when nothing
/// usable is left.
pub fn name_from(text: &str) -> Option<String> {
    let mut name: String = text
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(MAX_NAME_LEN);
    let name = name.trim_start_matches(['-', '_']).trim_end_matches('-');
    validate_name(name).is_ok().then(|| name.to_string())
}

/// Validates a record id made by a proposer.
pub fn validate_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Id(id.to_string()))
    }
}

/// Validates a `HOST:PORT` socket address of a replica (IP literal or DNS name).
pub fn validate_socket_addr(input: &str) -> Result<(), ValidationError> {
    normalize_target(input).map(|_| ()).map_err(|e| match e {
        ValidationError::Target(s, why) => ValidationError::Address(s, why),
        other => other,
    })
}

/// Longest TXT record value accepted.
pub const MAX_TXT_LEN: usize = 1024;
/// Longest DNS record TTL accepted: one week.
pub const MAX_TTL: u32 = 7 * 24 * 3600;

/// Checks a base64 WireGuard public key (32 bytes).
pub fn validate_wg_key(key: &str) -> Result<(), ValidationError> {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        _ => Err(ValidationError::WgKey),
    }
}

/// Checks an IP address literal (v4 or v6) and returns its normal form.
pub fn normalize_ip(ip: &str) -> Result<String, ValidationError> {
    ip.parse::<std::net::IpAddr>()
        .map(|a| a.to_string())
        .map_err(|_| ValidationError::Ip(ip.to_string()))
}

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub network: u32,
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parses `a.b.c.d/len`; the address must be the network address.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let bad = |why: &str| ValidationError::Pool(s.to_string(), why.to_string());
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        if prefix > 32 {
            return Err(bad("bad prefix length"));
        }
        let network = u32::from(addr);
        if network & !Self::mask(prefix) != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(Ipv4Net { network, prefix })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// The /`len` subnets inside this network, in order.
    pub fn subnets(&self, len: u8) -> impl Iterator<Item = Ipv4Net> {
        let count: u64 = if len >= self.prefix && len <= 32 {
            1u64 << (len - self.prefix)
        } else {
            0
        };
        let step: u64 = 1u64 << (32 - len.min(32));
        let base = self.network as u64;
        (0..count).map(move |i| Ipv4Net {
            network: (base + i * step) as u32,
            prefix: len,
        })
    }

    /// Usable host addresses (without the network and broadcast addresses), in order.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let size: u64 = 1u64 << (32 - self.prefix);
        let base = self.network as u64;
        let (first, last) = if size <= 2 { (0, size) } else { (1, size - 1) };
        (first..last).map(move |i| Ipv4Addr::from((base + i) as u32))
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// Checks the settings' pools: the tunnel pool must hold at least one /24, the edge pool at
/// least a few addresses.
pub fn validate_pools(tunnel_pool: &str, edge_pool: &str) -> Result<(), ValidationError> {
    let t = Ipv4Net::parse(tunnel_pool)?;
    if t.prefix > 24 {
        return Err(ValidationError::Pool(
            tunnel_pool.into(),
            "must be /24 or larger".into(),
        ));
    }
    let e = Ipv4Net::parse(edge_pool)?;
    if e.prefix > 29 {
        return Err(ValidationError::Pool(
            edge_pool.into(),
            "must be /29 or larger".into(),
        ));
    }
    Ok(())
}

/// Validates and normalises a static DNS record's name (`@`, or relative labels), value and TTL.
pub fn normalize_dns_record(
    name: &str,
    rtype: crate::model::DnsType,
    value: &str,
    ttl: u32,
) -> Result<(String, String), ValidationError> {
    use crate::model::DnsType;
    let bad = |why: String| ValidationError::DnsRecord(why);
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name != "@" {
        check_dns_name(&name, true).map_err(|why| bad(format!("name {name:?}: {why}")))?;
    }
    if ttl == 0 || ttl > MAX_TTL {
        return Err(bad(format!("ttl must be 1 to {MAX_TTL} seconds")));
    }
    let value = match rtype {
        DnsType::A => value
            .parse::<Ipv4Addr>()
            .map(|a| a.to_string())
            .map_err(|_| bad(format!("{value:?} is not an IPv4 address")))?,
        DnsType::AAAA => value
            .parse::<Ipv6Addr>()
            .map(|a| a.to_string())
            .map_err(|_| bad(format!("{value:?} is not an IPv6 address")))?,
        DnsType::CNAME => {
            let v = value.trim_end_matches('.').to_ascii_lowercase();
            check_dns_name(&v, true).map_err(|why| bad(format!("target {value:?}: {why}")))?;
            v
        }
        DnsType::TXT => {
            if value.is_empty()
                || value.len() > MAX_TXT_LEN
                || value.chars().any(|c| c.is_control())
            {
                return Err(bad(format!(
                    "TXT values are 1 to {MAX_TXT_LEN} printable characters"
                )));
            }
            value.to_string()
        }
    };
    Ok((name, value))
}

/// The DNS and health bounds of [`crate::Settings`]: a TTL of 1 s to a week, NS names that are
/// hostnames (at most 8), probes every 1 to 3600 s taking at most as long as the interval,
/// 1 to 100 probes to change a verdict, and a pull staleness bound of 10 s to a day.
pub fn validate_settings(s: &crate::Settings) -> Result<(), ValidationError> {
    let bad = |what: &str| Err(ValidationError::Settings(what.to_string()));
    if !(1..=604_800).contains(&s.dns_ttl) {
        return bad("dns_ttl must be 1 to 604800 seconds");
    }
    if s.dns_ns.len() > 8 {
        return bad("at most 8 dns_ns names");
    }
    for name in &s.dns_ns {
        if name.starts_with("*.") || &normalize_hostname(name)? != name {
            return bad("dns_ns names must be lowercase hostnames without a wildcard");
        }
    }
    if !(1..=3600).contains(&s.health_interval_secs) {
        return bad("health_interval_secs must be 1 to 3600");
    }
    if s.health_timeout_secs == 0 || s.health_timeout_secs > s.health_interval_secs {
        return bad("health_timeout_secs must be 1 to health_interval_secs");
    }
    if !(1..=100).contains(&s.health_fail_after) || !(1..=100).contains(&s.health_pass_after) {
        return bad("health_fail_after and health_pass_after must be 1 to 100");
    }
    if !(10..=86_400).contains(&s.edge_stale_secs) {
        return bad("edge_stale_secs must be 10 to 86400");
    }
    Ok(())
}

/// A zone name must be a hostname in normal form without a wildcard (`example.com`).
pub fn validate_zone(name: &str) -> Result<(), ValidationError> {
    if name.starts_with("*.") || normalize_hostname(name)? != name {
        return Err(ValidationError::Hostname(
            name.to_string(),
            "a zone is a lowercase name without a wildcard or a final dot".into(),
        ));
    }
    Ok(())
}

/// Most requests per second (and burst) a route's rate limit may name.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// A rate limit needs a rate and a burst of 1 to [`MAX_RATE_LIMIT`].
pub fn validate_rate_limit(limit: &crate::RateLimit) -> Result<(), ValidationError> {
    for (what, value) in [("per_second", limit.per_second), ("burst", limit.burst)] {
        if value == 0 || value > MAX_RATE_LIMIT {
            return Err(ValidationError::RateLimit(format!(
                "{what} must be 1 to {MAX_RATE_LIMIT}, not {value}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_from_free_text() {
        assert_eq!(
            name_from("edge-192.0.2.1").as_deref(),
            Some("edge-192-0-2-1")
        );
        assert_eq!(
            name_from("edge-2001:db8::1").as_deref(),
            Some("edge-2001-db8--1")
        );
        assert_eq!(name_from(" Pi.Home.LAN\n").as_deref(), Some("pi-home-lan"));
        assert_eq!(name_from("-_x_").as_deref(), Some("x_"));
        assert_eq!(
            name_from(&"a".repeat(100)).map(|n| n.len()),
            Some(MAX_NAME_LEN)
        );
        assert_eq!(name_from("..."), None);
        assert_eq!(name_from(""), None);
    }

    #[test]
    fn hostnames_are_normalised() {
        assert_eq!(
            normalize_hostname("App.Example.COM").unwrap(),
            "app.example.com"
        );
        assert_eq!(
            normalize_hostname("app.example.com.").unwrap(),
            "app.example.com"
        );
        assert_eq!(
            normalize_hostname("*.Example.com").unwrap(),
            "*.example.com"
        );
        assert_eq!(
            normalize_hostname("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn bad_hostnames_are_refused() {
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.com",
            "a-.com",
            "a b.com",
            "1.2.3.4",
            "*.",
            "a.*.com",
            "**.a.com",
            "ex ample.com",
            "a.com:80",
            "a/b.com",
        ] {
            assert!(
                normalize_hostname(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(normalize_hostname(&long).is_err());
        let too_long = format!("{}com", "abcdefghi.".repeat(26));
        assert!(normalize_hostname(&too_long).is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(
            normalize_target("LocalHost:8080").unwrap(),
            "localhost:8080"
        );
        assert_eq!(
            normalize_target("192.168.1.10:3000").unwrap(),
            "192.168.1.10:3000"
        );
        assert_eq!(normalize_target("[::1]:80").unwrap(), "[::1]:80");
        for bad in [
            "localhost",
            "localhost:0",
            "localhost:70000",
            ":80",
            "::1:80",
            "a b:1",
            "h:x",
        ] {
            assert!(normalize_target(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn pools_and_allocation_ranges() {
        let pool = Ipv4Net::parse("100.96.0.0/12").unwrap();
        let mut subnets = pool.subnets(24);
        assert_eq!(subnets.next().unwrap().to_string(), "100.96.0.0/24");
        assert_eq!(subnets.next().unwrap().to_string(), "100.96.1.0/24");
        assert_eq!(pool.subnets(24).count(), 4096);
        let s = Ipv4Net::parse("100.96.7.0/24").unwrap();
        let hosts: Vec<Ipv4Addr> = s.hosts().collect();
        assert_eq!(hosts.len(), 254);
        assert_eq!(hosts[0].to_string(), "100.96.7.1");
        assert!(Ipv4Net::parse("100.96.0.1/24").is_err());
        assert!(validate_pools("10.0.0.0/25", "100.64.0.0/16").is_err());
    }

    #[test]
    fn dns_records_and_keys() {
        use crate::model::DnsType;
        assert_eq!(
            normalize_dns_record("App1", DnsType::A, "1.2.3.4", 30).unwrap(),
            ("app1".to_string(), "1.2.3.4".to_string())
        );
        assert!(normalize_dns_record("a b", DnsType::A, "1.2.3.4", 30).is_err());
        assert!(normalize_dns_record("x", DnsType::A, "::1", 30).is_err());
        assert!(normalize_dns_record("x", DnsType::TXT, "", 30).is_err());
        assert!(normalize_dns_record("x", DnsType::A, "1.2.3.4", 0).is_err());
        assert!(validate_wg_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(validate_wg_key("short").is_err());
    }

    #[test]
    fn names_and_ids() {
        assert!(validate_name("home-server_1").is_ok());
        for bad in ["", "Home", "-a", "a b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_id("org_0123abc").is_ok());
        assert!(validate_id("a/b").is_err());
    }
}
