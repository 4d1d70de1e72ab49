//! The built-in authoritative DNS on three replicas (kdig as the client): route hostnames
//! answer with the edges' IPs (wildcards too), SOA serial = state version and rising after a
//! write, NS with glue, static TXT records from `kokoa dns add`, NXDOMAIN versus NODATA,
//! REFUSED outside the zones, truncation over UDP and the same answers over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use kokoa_tests::{kokoa_bin, wait_until_ok, Cluster};
use serde_json::json;

use crate::common::created;
use crate::dns_client::{dig, Dig};
use crate::fleet::{make_token, new_origin, new_route, registered, wg_key, EDGE_REGISTER};

const ZONE: &str = "example.test";
/// How long replication plus a snapshot rebuild may take.
const SETTLE: Duration = Duration::from_secs(20);

/// A three-replica cluster with DNS on every replica for `ZONE`.
pub async fn dns_cluster(n: usize) -> Cluster {
    Cluster::start_with(
        n,
        &["--dns-listen", "127.0.0.1:0", "--dns-zone", "Example.Test."],
    )
    .await
}

pub fn dns_addr(cluster: &Cluster, i: usize) -> SocketAddr {
    cluster
        .replica(i)
        .dns_addr()
        .unwrap_or_else(|| panic!("replica {i} logged no dns= address"))
}

/// Registers an edge at `public_ip` through the API, with a one-use bootstrap token.
async fn register_edge_at(cluster: &Cluster, name: &str, public_ip: &str) -> String {
    let bootstrap = make_token(&cluster.client(0), json!({ "role": "edge", "max_uses": 1 })).await;
    let api = cluster.client_with_token(0, Some(&bootstrap.token));
    let body = json!({ "name": name, "public_ip": public_ip, "wg_public_key": wg_key() });
    let response = api
        .post_json(EDGE_REGISTER, &body)
        .await
        .unwrap_or_else(|e| panic!("register edge {name}: {e}"));
    registered(&format!("register edge {name}"), &response).id
}

/// Waits until `check` accepts replica `i`'s answer to `name`/`rtype` (with kdig `extra`).
async fn wait_answer(
    cluster: &Cluster,
    i: usize,
    name: &str,
    rtype: &str,
    extra: &[&str],
    check: impl Fn(&Dig) -> Result<(), String>,
) -> Dig {
    let server = dns_addr(cluster, i);
    wait_until_ok(
        &format!("replica {i}: {name} {rtype} {extra:?}"),
        SETTLE,
        || {
            let check = &check;
            async move {
                let answer = dig(server, name, rtype, extra).await?;
                check(&answer).map_err(|e| format!("{e}\n{}", answer.raw))?;
                Ok(answer)
            }
        },
    )
    .await
}

fn expect(answer: &Dig, status: &str, rtype: &str, data: &[&str]) -> Result<(), String> {
    if answer.status != status {
        return Err(format!("status {} instead of {status}", answer.status));
    }
    let got = answer.data(rtype);
    let mut want: Vec<String> = data.iter().map(|s| s.to_string()).collect();
    want.sort();
    if got != want {
        return Err(format!("{rtype} answers {got:?} instead of {want:?}"));
    }
    Ok(())
}

/// NOERROR with no answer and the zone's SOA in the authority section.
fn expect_nodata(answer: &Dig) -> Result<(), String> {
    if answer.status != "NOERROR" || !answer.answers.is_empty() {
        return Err(format!(
            "not NODATA: {} {:?}",
            answer.status, answer.answers
        ));
    }
    answer
        .soa_serial()
        .map(|_| ())
        .ok_or_else(|| "no SOA in the authority section".to_string())
}

/// Runs `kokoa ARGS` against replica `i` with the admin token; asserts success.
async fn kokoa_cli(cluster: &Cluster, i: usize, args: &[&str]) -> String {
    let output = tokio::process::Command::new(kokoa_bin())
        .args(args)
        .env("KOKOA_SERVER", cluster.replica(i).api_url())
        .env("KOKOA_TOKEN", cluster.admin_token())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run kokoa {args:?}: {e}"));
    assert!(
        output.status.success(),
        "kokoa {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_answers_for_the_zone() {
    let cluster = dns_cluster(3).await;
    let admin = cluster.client(0);

    register_edge_at(&cluster, "edge-a", "192.0.2.1").await;
    register_edge_at(&cluster, "edge-b", "192.0.2.2").await;
    register_edge_at(&cluster, "edge-c", "2001:db8::3").await;
    let origin = new_origin(&admin, "home", "direct").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    new_route(&admin, "app.example.test", origin_id, "127.0.0.1:8080").await;
    new_route(&admin, "*.apps.example.test", origin_id, "127.0.0.1:8081").await;
    new_route(&admin, "deep.sub.example.test", origin_id, "127.0.0.1:8082").await;

    let edges_v4 = ["192.0.2.1", "192.0.2.2"];
    for i in 0..3 {
        // Route hostnames (exact and wildcard) answer with the edges' addresses.
        wait_answer(&cluster, i, "app.example.test", "A", &[], |a| {
            expect(a, "NOERROR", "A", &edges_v4)?;
            a.has_flag("aa")
                .then_some(())
                .ok_or("not authoritative".into())
        })
        .await;
        wait_answer(&cluster, i, "app.example.test", "AAAA", &[], |a| {
            expect(a, "NOERROR", "AAAA", &["2001:db8::3"])
        })
        .await;
        let wild = wait_answer(&cluster, i, "x.apps.example.test", "A", &[], |a| {
            expect(a, "NOERROR", "A", &edges_v4)
        })
        .await;
        // Owner name rewritten to the query name; TTL from the settings (30 s by default).
        assert!(
            wild.answers
                .iter()
                .all(|r| r.name == "x.apps.example.test." && r.ttl == 30),
            "{}",
            wild.raw
        );
        // Over TCP too.
        wait_answer(&cluster, i, "app.example.test", "A", &["+tcp"], |a| {
            expect(a, "NOERROR", "A", &edges_v4)
        })
        .await;

        // NS: one name per replica inside the zone, with glue.
        let ns = wait_answer(&cluster, i, ZONE, "NS", &[], |a| {
            expect(
                a,
                "NOERROR",
                "NS",
                &[
                    "ns1.example.test.",
                    "ns2.example.test.",
                    "ns3.example.test.",
                ],
            )
        })
        .await;
        assert!(
            ns.additional.iter().any(|r| r.rtype == "A"),
            "no glue: {}",
            ns.raw
        );
        wait_answer(&cluster, i, "ns2.example.test", "A", &[], |a| {
            expect(a, "NOERROR", "A", &["127.0.0.1"])
        })
        .await;

        // NXDOMAIN for a missing name, NODATA for a missing type or an empty non-terminal,
        // both with the SOA; a wildcard matches one label only.
        for extra in [&[][..], &["+tcp"][..]] {
            wait_answer(&cluster, i, "missing.example.test", "A", extra, |a| {
                expect(a, "NXDOMAIN", "A", &[])?;
                a.soa_serial().map(|_| ()).ok_or("no SOA".into())
            })
            .await;
            wait_answer(&cluster, i, "app.example.test", "TXT", extra, expect_nodata).await;
            wait_answer(&cluster, i, "sub.example.test", "A", extra, expect_nodata).await;
            wait_answer(&cluster, i, "a.b.apps.example.test", "A", extra, |a| {
                expect(a, "NXDOMAIN", "A", &[])
            })
            .await;
            // Outside every managed zone.
            wait_answer(&cluster, i, "example.org", "A", extra, |a| {
                expect(a, "REFUSED", "A", &[])
            })
            .await;
            wait_answer(&cluster, i, "test", "SOA", extra, |a| {
                expect(a, "REFUSED", "SOA", &[])
            })
            .await;
        }
    }

    // The SOA serial is the state version, and rises after a write on every replica.
    let mut serials = Vec::new();
    for i in 0..3 {
        let soa = wait_answer(&cluster, i, ZONE, "SOA", &[], |a| {
            if a.status != "NOERROR" {
                return Err(format!("status {}", a.status));
            }
            a.soa_serial().map(|_| ()).ok_or("no SOA".into())
        })
        .await;
        serials.push(soa.soa_serial().unwrap_or_default());
    }

    // A static TXT record added with the CLI through a follower appears on every replica.
    let follower = cluster.followers().await[0];
    kokoa_cli(
        &cluster,
        follower,
        &[
            "dns",
            "add",
            "--name",
            "_acme-challenge",
            "--type",
            "TXT",
            "--value",
            "token-123",
        ],
    )
    .await;
    kokoa_cli(
        &cluster,
        0,
        &["dns", "add", "--name", "static", "--ip", "198.51.100.9"],
    )
    .await;
    for (i, &before) in serials.iter().enumerate() {
        wait_answer(
            &cluster,
            i,
            "_acme-challenge.example.test",
            "TXT",
            &[],
            |a| expect(a, "NOERROR", "TXT", &["\"token-123\""]),
        )
        .await;
        wait_answer(&cluster, i, "static.example.test", "A", &["+tcp"], |a| {
            expect(a, "NOERROR", "A", &["198.51.100.9"])
        })
        .await;
        wait_answer(&cluster, i, ZONE, "SOA", &[], |a| match a.soa_serial() {
            Some(s) if s > before => Ok(()),
            other => Err(format!("serial {other:?}, not above {before}")),
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let cluster = dns_cluster(1).await;
    let admin = cluster.client(0);
    // Ten 200-byte TXT records at one name: about 2 KB, more than 512 bytes.
    for n in 0..10 {
        let value = format!("{n}-{}", "x".repeat(200));
        let response = admin
            .post_json(
                "/api/v1/dns/records",
                &json!({ "name": "big", "type": "TXT", "value": value }),
            )
            .await
            .expect("POST /api/v1/dns/records");
        created("TXT record", &response);
    }
    let name = "big.example.test";
    wait_answer(&cluster, 0, name, "TXT", &["+tcp"], |a| {
        (a.data("TXT").len() == 10)
            .then_some(())
            .ok_or(format!("{} TXT answers", a.data("TXT").len()))
    })
    .await;
    // Without EDNS the limit is 512 bytes: TC is set (kdig +ignore keeps the truncated answer).
    let udp = dig(
        dns_addr(&cluster, 0),
        name,
        "TXT",
        &["+notcp", "+noedns", "+ignore"],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(udp.has_flag("tc"), "no TC over UDP: {}", udp.raw);
    // With a 4096-byte EDNS buffer it all fits.
    let edns = dig(
        dns_addr(&cluster, 0),
        name,
        "TXT",
        &["+notcp", "+bufsize=4096"],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!edns.has_flag("tc"), "TC despite EDNS: {}", edns.raw);
    assert_eq!(edns.data("TXT").len(), 10, "{}", edns.raw);
}

/// A replica stopped and started again answers from the state it has with its first answer:
/// never REFUSED or NXDOMAIN while it has yet to build its zones (queries sent the moment it
/// listens). Stopped with SIGTERM, which makes its state durable: after a kill -9 it could
/// restart with the last writes still to replay from its log, and answer without them until
/// it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_answers_at_once() {
    let mut cluster = dns_cluster(3).await;
    let admin = cluster.client(0);
    register_edge_at(&cluster, "edge-a", "192.0.2.1").await;
    let origin = new_origin(&admin, "home", "direct").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    new_route(&admin, "app.example.test", origin_id, "127.0.0.1:8080").await;
    for i in 0..3 {
        wait_answer(&cluster, i, "app.example.test", "A", &[], |a| {
            expect(a, "NOERROR", "A", &["192.0.2.1"])
        })
        .await;
    }
    for round in 0..3 {
        let i = round % cluster.len();
        cluster.replica(i).sigterm();
        cluster
            .replica_mut(i)
            .wait_exit(SETTLE)
            .await
            .unwrap_or_else(|| panic!("replica {i} did not exit after SIGTERM"));
        cluster
            .replica_mut(i)
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = dig(dns_addr(&cluster, i), "app.example.test", "A", &[])
            .await
            .unwrap_or_else(|e| panic!("replica {i} after its restart: {e}"));
        expect(&first, "NOERROR", "A", &["192.0.2.1"]).unwrap_or_else(|e| {
            panic!(
                "replica {i}'s first answer after its restart: {e}\n{}",
                first.raw
            )
        });
    }
}
