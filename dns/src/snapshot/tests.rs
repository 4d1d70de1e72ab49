//! Unit tests of the snapshot: what each kind of name answers.

use std::str::FromStr;

use super::*;

fn edge(id: &str, ip: &str) -> EdgeNode {
    EdgeNode {
        id: id.into(),
        name: id.into(),
        public_ip: ip.into(),
        wg_public_key: String::new(),
        wg_port: 51820,
        http_port: 80,
        tunnel_ip: None,
        created_at: 0,
    }
}

fn route(host: &str) -> Route {
    Route {
        id: host.into(),
        hostname: host.into(),
        origin_id: "o".into(),
        target: "127.0.0.1:80".into(),
        created_at: 0,
        rate_limit: None,
        allow_http: false,
    }
}

fn origin(id: &str, kind: OriginKind) -> Origin {
    Origin {
        id: id.into(),
        name: id.into(),
        kind,
        created_at: 0,
        subnet: None,
    }
}

fn record(name: &str, rtype: DnsType, value: &str) -> DnsRecord {
    DnsRecord {
        id: name.into(),
        name: name.into(),
        rtype,
        value: value.into(),
        ttl: 60,
        created_at: 0,
    }
}

fn view() -> StateView {
    StateView {
        version: 42,
        zones: vec![DnsZone {
            name: "example.test".into(),
            created_at: 0,
        }],
        routes: vec![
            route("app.example.test"),
            route("*.apps.example.test"),
            route("other.org"),
        ],
        origins: vec![
            origin("o", OriginKind::Tunnel),
            origin("p", OriginKind::Tunnel),
        ],
        edges: vec![edge("e1", "192.0.2.1"), edge("e2", "192.0.2.2")],
        health: vec![],
        records: vec![
            record("txt", DnsType::TXT, &"y".repeat(300)),
            record("www", DnsType::CNAME, "app.example.test"),
        ],
        settings: Settings::default(),
        replicas: vec![ReplicaInfo {
            id: 1,
            api_addr: "127.0.0.1:7300".into(),
        }],
    }
}

fn n(s: &str) -> LowerName {
    LowerName::from(Name::from_str(s).expect("name"))
}

fn ips(answer: &Answer) -> Vec<String> {
    match answer {
        Answer::Records { answers, .. } => answers
            .iter()
            .flat_map(|s| s.records_without_rrsigs())
            .map(|r| r.data.to_string())
            .collect(),
        other => panic!("not records: {other:?}"),
    }
}

#[test]
fn routes_answer_with_healthy_edges_and_fail_open() {
    let mut v = view();
    let zone = n("example.test.");
    let snap = ZoneSnapshot::build(&v);
    assert_eq!(
        ips(&snap.lookup(&zone, &n("app.example.test."), RecordType::A)),
        ["192.0.2.1", "192.0.2.2"]
    );
    v.health = vec![EdgeHealth {
        edge_id: "e1".into(),
        healthy: false,
        since: 0,
        reason: "down".into(),
        unreachable_origins: vec![],
    }];
    let snap = ZoneSnapshot::build(&v);
    assert_eq!(
        ips(&snap.lookup(&zone, &n("app.example.test."), RecordType::A)),
        ["192.0.2.2"]
    );
    v.health.push(EdgeHealth {
        edge_id: "e2".into(),
        healthy: false,
        since: 0,
        reason: "down".into(),
        unreachable_origins: vec![],
    });
    let snap = ZoneSnapshot::build(&v);
    assert_eq!(
        ips(&snap.lookup(&zone, &n("app.example.test."), RecordType::A)),
        ["192.0.2.1", "192.0.2.2"],
        "every edge when none is healthy"
    );
}

fn health(edge_id: &str, healthy: bool, unreachable_origins: &[&str]) -> EdgeHealth {
    EdgeHealth {
        edge_id: edge_id.into(),
        healthy,
        since: 0,
        reason: String::new(),
        unreachable_origins: unreachable_origins.iter().map(|o| o.to_string()).collect(),
    }
}

#[test]
fn routes_leave_out_the_edges_that_cannot_reach_their_origin() {
    let mut v = view();
    v.edges.push(edge("e3", "192.0.2.3"));
    let mut other = route("other.example.test");
    other.origin_id = "p".into();
    v.routes.push(other);
    let zone = n("example.test.");
    let a = |v: &StateView, name: &str| {
        ips(&ZoneSnapshot::build(v).lookup(&zone, &n(name), RecordType::A))
    };

    // e1 cannot reach o: o's hostnames (wildcards too) leave it out, p's keep it. e3 is
    // unhealthy and stays out of both, whatever it reports.
    v.health = vec![health("e1", true, &["o"]), health("e3", false, &["p"])];
    assert_eq!(a(&v, "app.example.test."), ["192.0.2.2"]);
    assert_eq!(a(&v, "x.apps.example.test."), ["192.0.2.2"]);
    assert_eq!(a(&v, "other.example.test."), ["192.0.2.1", "192.0.2.2"]);

    // Every healthy edge cannot reach o: the healthy edges (fail open), still without e3.
    v.health = vec![
        health("e1", true, &["o"]),
        health("e2", true, &["o", "p"]),
        health("e3", false, &[]),
    ];
    assert_eq!(a(&v, "app.example.test."), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(a(&v, "other.example.test."), ["192.0.2.1"]);

    // An edge without a verdict counts as healthy and reaching everything.
    v.health.truncate(2);
    assert_eq!(a(&v, "app.example.test."), ["192.0.2.3"]);

    // No healthy edge: every edge, whatever they report.
    v.health = vec![
        health("e1", false, &["o"]),
        health("e2", false, &[]),
        health("e3", false, &["o"]),
    ];
    assert_eq!(
        a(&v, "app.example.test."),
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    );
}

#[test]
fn a_direct_origins_failed_dial_leaves_no_edge_out() {
    let mut v = view();
    v.origins = vec![origin("o", OriginKind::Direct)];
    v.health = vec![health("e1", true, &["o"])];
    let zone = n("example.test.");
    let snap = ZoneSnapshot::build(&v);
    assert_eq!(
        ips(&snap.lookup(&zone, &n("app.example.test."), RecordType::A)),
        ["192.0.2.1", "192.0.2.2"]
    );
}

#[test]
fn edges_sharing_an_address_answer_it_while_one_of_them_reaches_the_origin() {
    let mut v = view();
    v.edges.push(edge("e3", "192.0.2.2"));
    let zone = n("example.test.");
    let a = |v: &StateView| {
        ips(&ZoneSnapshot::build(v).lookup(&zone, &n("app.example.test."), RecordType::A))
    };
    v.health = vec![health("e2", true, &["o"])];
    assert_eq!(a(&v), ["192.0.2.1", "192.0.2.2"]);
    v.health.push(health("e3", true, &["o"]));
    assert_eq!(a(&v), ["192.0.2.1"]);
    // answer_ips ignores the reports: the healthy edges.
    assert_eq!(answer_ips(&v.edges, &v.health).len(), 2);
}

#[test]
fn nxdomain_nodata_wildcards_and_zones() {
    let snap = ZoneSnapshot::build(&view());
    let zone = n("example.test.");
    let look = |name: &str, t| snap.lookup(&zone, &n(name), t);
    assert!(matches!(
        look("nope.example.test.", RecordType::A),
        Answer::NxDomain
    ));
    assert!(matches!(
        look("app.example.test.", RecordType::TXT),
        Answer::NoData
    ));
    // The wildcard's parent is an empty non-terminal.
    assert!(matches!(
        look("apps.example.test.", RecordType::A),
        Answer::NoData
    ));
    assert_eq!(ips(&look("x.apps.example.test.", RecordType::A)).len(), 2);
    assert!(matches!(
        look("a.b.apps.example.test.", RecordType::A),
        Answer::NxDomain
    ));
    // CNAME answers for any type; a long TXT is split into 255-byte strings.
    assert!(ips(&look("www.example.test.", RecordType::A))[0].contains("app.example.test"));
    match look("txt.example.test.", RecordType::TXT) {
        Answer::Records { answers, .. } => {
            let record = answers[0].records_without_rrsigs().next().expect("record");
            match &record.data {
                RData::TXT(txt) => assert_eq!(txt.txt_data.len(), 2),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    // Routes of other domains are not in the zone; unknown zones are refused.
    assert!(matches!(
        snap.lookup(&n("other.org."), &n("other.org."), RecordType::A),
        Answer::NotInZone
    ));
    // SOA serial is the version; NS comes with glue.
    match look("example.test.", RecordType::SOA) {
        Answer::Records { answers, .. } => {
            let soa = answers[0].records_without_rrsigs().next().expect("soa");
            match &soa.data {
                RData::SOA(soa) => assert_eq!(soa.serial, 42),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    match look("example.test.", RecordType::NS) {
        Answer::Records { additionals, .. } => assert_eq!(additionals.len(), 1),
        other => panic!("{other:?}"),
    }
}
