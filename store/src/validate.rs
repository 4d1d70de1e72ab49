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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn names_and_ids() {
        assert!(validate_name("home-server_1").is_ok());
        for bad in ["", "Home", "-a", "a b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_id("org_0123abc").is_ok());
        assert!(validate_id("a/b").is_err());
    }
}
