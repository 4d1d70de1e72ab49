//! DNS queries to the replicas with `kdig` (Debian's knot-dnsutils), as a user's resolver would
//! ask them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::process::Command;

/// How long one query (with its retry) may take in all.
const QUERY_DEADLINE: Duration = Duration::from_secs(6);

/// The A records `server` gives for `name`, sorted; an error when it does not answer
/// NOERROR in time.
pub async fn query_a(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let run = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["A", name, "+timeout=2", "+retry=1"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(QUERY_DEADLINE, run)
        .await
        .map_err(|_| format!("kdig @{server}: no result within {QUERY_DEADLINE:?}"))?
        .map_err(|e| format!("cannot run kdig (install knot-dnsutils): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !text.contains("status: NOERROR") {
        let err = String::from_utf8_lossy(&output.stderr);
        let why = err
            .lines()
            .chain(text.lines())
            .find(|l| l.contains("ERROR") || l.contains("WARNING") || l.contains("status:"));
        return Err(format!(
            "kdig @{server} A {name}: {}",
            why.unwrap_or("no answer").trim()
        ));
    }
    Ok(answer_ips(&text))
}

/// The addresses of the A/AAAA records in kdig's answer section, sorted.
fn answer_ips(text: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, _, "A" | "AAAA", ip] => ip.parse().ok(),
                [_, _, "A" | "AAAA", ip] => ip.parse().ok(),
                _ => None,
            }
        })
        .collect();
    ips.sort();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_answer_section() {
        let text = ";; ->>HEADER<<- opcode: QUERY; status: NOERROR; id: 1\n\
                    ;; QUESTION SECTION:\n;; web.chaos.test.\t\tIN\tA\n\n\
                    ;; ANSWER SECTION:\n\
                    web.chaos.test.      \t30\tIN\tA\t127.0.0.3\n\
                    web.chaos.test.      \t30\tIN\tA\t127.0.0.2\n";
        assert_eq!(
            answer_ips(text),
            [
                "127.0.0.2".parse::<IpAddr>().expect("ip"),
                "127.0.0.3".parse().expect("ip")
            ]
        );
    }
}
