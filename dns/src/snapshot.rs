//! The immutable `ZoneSnapshot`: every managed zone's records, built from one consistent read of
//! the replicated state (`StateView`), and the lookup rules over it (exact names, one-label
//! wildcards, CNAME, NXDOMAIN versus NODATA). Queries read a snapshot; nothing here locks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType};
use kokoa_store::{
    DnsRecord, DnsType, DnsZone, EdgeHealth, EdgeNode, Origin, OriginKind, ReplicaInfo, Route,
    Settings,
};

/// SOA refresh, retry and expire (seconds): there are no secondaries, so only sanity matters.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 1_209_600;
/// Longest character-string inside a TXT record (RFC 1035 §3.3.14).
const TXT_CHUNK: usize = 255;

/// The parts of the state the DNS answers from, read in one transaction.
#[derive(Debug, Clone, Default)]
pub struct StateView {
    /// The state version: the SOA serial.
    pub version: u64,
    pub zones: Vec<DnsZone>,
    pub routes: Vec<Route>,
    pub origins: Vec<Origin>,
    pub edges: Vec<EdgeNode>,
    pub health: Vec<EdgeHealth>,
    pub records: Vec<DnsRecord>,
    pub settings: Settings,
    pub replicas: Vec<ReplicaInfo>,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The records to answer with, and records for the additional section (NS glue).
    Records {
        answers: Vec<Arc<RecordSet>>,
        additionals: Vec<Arc<RecordSet>>,
    },
    /// The name exists (or is an empty non-terminal) but has no records of that type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The zone is not (or no longer) managed, or the name is outside it.
    NotInZone,
}

/// One managed zone's records.
#[derive(Debug, Default)]
struct Zone {
    /// Every name with records, and every empty non-terminal (with no sets).
    nodes: HashMap<LowerName, Vec<Arc<RecordSet>>>,
}

/// Every managed zone's records at one state version.
#[derive(Debug, Default)]
pub struct ZoneSnapshot {
    version: u64,
    zones: HashMap<LowerName, Zone>,
}

impl ZoneSnapshot {
    /// The state version this snapshot was built from (the SOA serial, modulo 2^32).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The managed zones' origins.
    pub fn origins(&self) -> impl Iterator<Item = &LowerName> {
        self.zones.keys()
    }

    /// Builds the snapshot of `view`.
    pub fn build(view: &StateView) -> Self {
        let origins: Vec<Name> = view.zones.iter().filter_map(|z| fqdn(&z.name)).collect();
        let ttl = view.settings.dns_ttl.max(1);
        let answers = RouteAnswers::new(&view.edges, &view.health, &view.origins);
        let mut zones = HashMap::new();
        for origin in &origins {
            let mut zone = ZoneBuilder::new(origin.clone());
            zone.apex(view, ttl);
            for route in &view.routes {
                let Some(host) = fqdn(&route.hostname) else {
                    continue;
                };
                // A hostname belongs to the most specific managed zone that contains it.
                if most_specific(&origins, &host) != Some(origin) {
                    continue;
                }
                for ip in answers.for_origin(&route.origin_id) {
                    zone.add(&host, ttl, ip_rdata(*ip));
                }
                zone.touch(&host);
            }
            for record in &view.records {
                let Some(name) = relative(&record.name, origin) else {
                    continue;
                };
                if let Some(rdata) = static_rdata(record, origin) {
                    zone.add(&name, record.ttl.max(1), rdata);
                }
            }
            zones.insert(LowerName::new(origin), zone.finish());
        }
        Self {
            version: view.version,
            zones,
        }
    }

    /// Looks `name`/`rtype` up in the zone `origin`.
    pub fn lookup(&self, origin: &LowerName, name: &LowerName, rtype: RecordType) -> Answer {
        let Some(zone) = self.zones.get(origin) else {
            return Answer::NotInZone;
        };
        if !origin.zone_of(name) {
            return Answer::NotInZone;
        }
        if let Some(sets) = zone.nodes.get(name) {
            let answer = select(sets, rtype, None);
            return with_glue(zone, origin, name, rtype, answer);
        }
        // A wildcard answers for one label directly under it, for names that do not exist.
        if name != origin {
            let wildcard = name.clone().into_wildcard();
            if let Some(sets) = zone.nodes.get(&wildcard) {
                return select(sets, rtype, Some(&Name::from(name)));
            }
        }
        Answer::NxDomain
    }
}

/// For NS queries at the apex: the in-zone name servers' addresses as additionals.
fn with_glue(
    zone: &Zone,
    origin: &LowerName,
    name: &LowerName,
    rtype: RecordType,
    answer: Answer,
) -> Answer {
    let Answer::Records {
        answers,
        mut additionals,
    } = answer
    else {
        return answer;
    };
    if rtype == RecordType::NS && name == origin {
        for set in &answers {
            for record in set.records_without_rrsigs() {
                if let RData::NS(NS(target)) = &record.data {
                    let target = LowerName::new(target);
                    if let Some(sets) = zone.nodes.get(&target) {
                        additionals.extend(
                            sets.iter()
                                .filter(|s| {
                                    matches!(s.record_type(), RecordType::A | RecordType::AAAA)
                                })
                                .cloned(),
                        );
                    }
                }
            }
        }
    }
    Answer::Records {
        answers,
        additionals,
    }
}

/// Picks the sets answering `rtype` at a node; `rename` rewrites owner names (wildcards).
fn select(sets: &[Arc<RecordSet>], rtype: RecordType, rename: Option<&Name>) -> Answer {
    let chosen: Vec<&Arc<RecordSet>> = match rtype {
        RecordType::ANY => sets.iter().collect(),
        _ => {
            let exact: Vec<_> = sets.iter().filter(|s| s.record_type() == rtype).collect();
            if exact.is_empty() {
                sets.iter()
                    .filter(|s| s.record_type() == RecordType::CNAME)
                    .collect()
            } else {
                exact
            }
        }
    };
    if chosen.is_empty() {
        return Answer::NoData;
    }
    let answers = chosen
        .into_iter()
        .map(|set| match rename {
            None => set.clone(),
            Some(name) => Arc::new(renamed(set, name)),
        })
        .collect();
    Answer::Records {
        answers,
        additionals: Vec::new(),
    }
}

fn renamed(set: &RecordSet, name: &Name) -> RecordSet {
    let mut out = RecordSet::with_ttl(name.clone(), set.record_type(), set.ttl());
    for record in set.records_without_rrsigs() {
        out.add_rdata(record.data.clone());
    }
    out
}

/// Collects one zone's records by name and type.
struct ZoneBuilder {
    origin: Name,
    nodes: BTreeMap<Name, BTreeMap<RecordType, RecordSet>>,
}

impl ZoneBuilder {
    fn new(origin: Name) -> Self {
        Self {
            origin,
            nodes: BTreeMap::new(),
        }
    }

    /// SOA, NS and (when the NS names are inside the zone) their glue addresses.
    fn apex(&mut self, view: &StateView, ttl: u32) {
        let origin = self.origin.clone();
        let mut replicas = view.replicas.clone();
        replicas.sort_by_key(|r| r.id);
        let ns_names: Vec<(Name, Option<IpAddr>)> = if view.settings.dns_ns.is_empty() {
            let count = replicas.len().max(1);
            (0..count)
                .filter_map(|i| {
                    let name = Name::from_ascii(format!("ns{}", i + 1))
                        .ok()?
                        .append_domain(&origin)
                        .ok()?;
                    let ip = replicas.get(i).and_then(|r| replica_ip(&r.api_addr));
                    Some((name, ip))
                })
                .collect()
        } else {
            view.settings
                .dns_ns
                .iter()
                .filter_map(|n| fqdn(n).map(|name| (name, None)))
                .collect()
        };
        let mname = ns_names
            .first()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| origin.clone());
        let rname = Name::from_ascii("hostmaster")
            .ok()
            .and_then(|h| h.append_domain(&origin).ok())
            .unwrap_or_else(|| origin.clone());
        let serial = (view.version & u64::from(u32::MAX)) as u32;
        let soa = SOA::new(
            mname,
            rname,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            ttl,
        );
        self.add(&origin, ttl, RData::SOA(soa));
        for (name, ip) in ns_names {
            self.add(&origin, ttl, RData::NS(NS(name.clone())));
            if let Some(ip) = ip {
                if origin.zone_of(&name) {
                    self.add(&name, ttl, ip_rdata(ip));
                }
            }
        }
    }

    /// Adds one record (its set takes the TTL of the first record added).
    fn add(&mut self, name: &Name, ttl: u32, rdata: RData) {
        let name = name.to_lowercase();
        let rtype = rdata.record_type();
        let set = self
            .nodes
            .entry(name.clone())
            .or_default()
            .entry(rtype)
            .or_insert_with(|| RecordSet::with_ttl(name.clone(), rtype, ttl));
        set.insert(Record::from_rdata(name, ttl, rdata), 0);
    }

    /// Makes `name` exist even without records (a route while there are no edges).
    fn touch(&mut self, name: &Name) {
        self.nodes.entry(name.to_lowercase()).or_default();
    }

    fn finish(self) -> Zone {
        let mut nodes: HashMap<LowerName, Vec<Arc<RecordSet>>> = HashMap::new();
        let origin = LowerName::new(&self.origin);
        let mut ents = HashSet::new();
        for (name, sets) in self.nodes {
            let lower = LowerName::new(&name);
            // Every name between a node and the apex exists (empty non-terminals).
            let mut parent = lower.base_name();
            while origin.zone_of(&parent) && parent != origin {
                ents.insert(parent.clone());
                parent = parent.base_name();
            }
            nodes.insert(lower, sets.into_values().map(Arc::new).collect());
        }
        for ent in ents {
            nodes.entry(ent).or_default();
        }
        Zone { nodes }
    }
}

/// The addresses route hostnames resolve to, worked out once per snapshot from the edges and
/// their committed health. For a route of origin `O`, in order (failing open at each step, so
/// that a route never answers with nothing while edges exist):
/// 1. the healthy edges that do not report `O` unreachable;
/// 2. if none: the healthy edges;
/// 3. if none: every edge.
///
/// An edge is healthy unless its health record says otherwise; only healthy edges' reports of
/// unreachable *tunnel* origins (none of whose agents is connected to the edge: agents keep
/// their connections up, so the report follows the truth without traffic) count. A direct
/// origin's report comes from the edge's last dial, which an edge left out of DNS would
/// hardly make again: it is shown by the API but leaves no edge out.
#[derive(Debug, Clone, Default)]
pub struct RouteAnswers {
    /// Steps 2 and 3: the answer for an origin that no healthy edge reports unreachable.
    any: Vec<IpAddr>,
    /// Origin id -> its answer, for the origins some healthy edge reports unreachable.
    by_origin: HashMap<String, Vec<IpAddr>>,
}

impl RouteAnswers {
    pub fn new(edges: &[EdgeNode], health: &[EdgeHealth], origins: &[Origin]) -> Self {
        let tunnel: HashSet<&str> = origins
            .iter()
            .filter(|o| o.kind == OriginKind::Tunnel)
            .map(|o| o.id.as_str())
            .collect();
        let unhealthy: HashSet<&str> = health
            .iter()
            .filter(|h| !h.healthy)
            .map(|h| h.edge_id.as_str())
            .collect();
        let healthy: Vec<(&str, IpAddr)> = edges
            .iter()
            .filter(|e| !unhealthy.contains(e.id.as_str()))
            .filter_map(|e| Some((e.id.as_str(), public_ip(e)?)))
            .collect();
        if healthy.is_empty() {
            // Fail open: every edge, whatever it reports.
            return Self {
                any: sorted(edges.iter().filter_map(public_ip)),
                by_origin: HashMap::new(),
            };
        }
        // Origin id -> the healthy edges that report it unreachable.
        let mut unreachable: HashMap<&str, HashSet<&str>> = HashMap::new();
        for h in health.iter().filter(|h| h.healthy) {
            for origin in h
                .unreachable_origins
                .iter()
                .filter(|o| tunnel.contains(o.as_str()))
            {
                unreachable
                    .entry(origin.as_str())
                    .or_default()
                    .insert(h.edge_id.as_str());
            }
        }
        let any = sorted(healthy.iter().map(|(_, ip)| *ip));
        let by_origin = unreachable
            .into_iter()
            .map(|(origin, from)| {
                let reach = sorted(
                    healthy
                        .iter()
                        .filter(|(id, _)| !from.contains(id))
                        .map(|(_, ip)| *ip),
                );
                let ips = if reach.is_empty() { any.clone() } else { reach };
                (origin.to_string(), ips)
            })
            .collect();
        Self { any, by_origin }
    }

    /// The addresses of the hostnames routed to `origin_id`, sorted.
    pub fn for_origin(&self, origin_id: &str) -> &[IpAddr] {
        self.by_origin.get(origin_id).unwrap_or(&self.any)
    }
}

/// The addresses of a route whose origin no healthy edge reports unreachable: the healthy
/// edges' public IPs, or every edge's when none is healthy (fail open), sorted. Route hostnames
/// answer with [`RouteAnswers::for_origin`].
pub fn answer_ips(edges: &[EdgeNode], health: &[EdgeHealth]) -> Vec<IpAddr> {
    RouteAnswers::new(edges, health, &[]).any
}

fn public_ip(edge: &EdgeNode) -> Option<IpAddr> {
    edge.public_ip.parse().ok()
}

/// `ips` sorted, without duplicates (edges sharing an address answer it once).
fn sorted(ips: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = ips.collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

fn ip_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The IP of a replica's API address, when it names one host (not a wildcard address).
fn replica_ip(api_addr: &str) -> Option<IpAddr> {
    let ip = api_addr.parse::<SocketAddr>().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The record data of a static record, or `None` if its value does not parse.
fn static_rdata(record: &DnsRecord, origin: &Name) -> Option<RData> {
    Some(match record.rtype {
        DnsType::A => RData::A(A(record.value.parse().ok()?)),
        DnsType::AAAA => RData::AAAA(AAAA(record.value.parse().ok()?)),
        DnsType::CNAME => {
            let target = if record.value.ends_with('.') {
                Name::from_ascii(&record.value).ok()?
            } else if record.value.contains('.') {
                fqdn(&record.value)?
            } else {
                // A single label is relative to the zone.
                relative(&record.value, origin)?
            };
            RData::CNAME(CNAME(target))
        }
        DnsType::TXT => RData::TXT(TXT::new(txt_chunks(&record.value))),
    })
}

/// Splits a TXT value into character-strings of at most 255 bytes (on char boundaries).
fn txt_chunks(value: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > TXT_CHUNK {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// `name` (relative to the zone, or `@`) as an absolute name in `origin`.
fn relative(name: &str, origin: &Name) -> Option<Name> {
    if name == "@" || name.is_empty() {
        return Some(origin.clone());
    }
    let mut rel = Name::from_ascii(name.trim_end_matches('.')).ok()?;
    rel.set_fqdn(false);
    rel.append_domain(origin).ok()
}

/// `host` (without a final dot) as an absolute, lowercase name.
fn fqdn(host: &str) -> Option<Name> {
    let mut name = Name::from_ascii(host.trim_end_matches('.')).ok()?;
    name.set_fqdn(true);
    Some(name.to_lowercase())
}

/// The most specific origin that contains `host`.
fn most_specific<'a>(origins: &'a [Name], host: &Name) -> Option<&'a Name> {
    origins
        .iter()
        .filter(|o| o.zone_of(host))
        .max_by_key(|o| o.num_labels())
}

#[cfg(test)]
mod tests;
