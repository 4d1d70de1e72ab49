//! `SnapshotZone`: the hickory `ZoneHandler` of one managed zone. It answers from the current
//! `ZoneSnapshot` (an `ArcSwap` load per query, no lock), so a new state version shows up in
//! the next answer without touching the catalog.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{LowerName, RecordType, TSigResponseContext};
use hickory_server::server::{Request, RequestInfo};
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, LookupRecords,
    ZoneHandler, ZoneType,
};

use crate::snapshot::{Answer, ZoneSnapshot};

/// Answers for the zone `origin` from the shared snapshot.
#[derive(Debug)]
pub struct SnapshotZone {
    origin: LowerName,
    snapshot: Arc<ArcSwap<ZoneSnapshot>>,
}

impl SnapshotZone {
    pub fn new(origin: LowerName, snapshot: Arc<ArcSwap<ZoneSnapshot>>) -> Self {
        Self { origin, snapshot }
    }

    fn answer(
        &self,
        name: &LowerName,
        rtype: RecordType,
        options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        let answer = self.snapshot.load().lookup(&self.origin, name, rtype);
        LookupControlFlow::Continue(match answer {
            Answer::Records {
                answers,
                additionals,
            } => {
                let additionals =
                    (!additionals.is_empty()).then(|| LookupRecords::many(options, additionals));
                Ok(AuthLookup::answers(
                    LookupRecords::many(options, answers),
                    additionals,
                ))
            }
            Answer::NoData => Err(LookupError::NameExists),
            Answer::NxDomain => Err(LookupError::from(ResponseCode::NXDomain)),
            Answer::NotInZone => Err(LookupError::from(ResponseCode::Refused)),
        })
    }
}

#[async_trait::async_trait]
impl ZoneHandler for SnapshotZone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        &self.origin
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        _request_info: Option<&RequestInfo<'_>>,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        self.answer(name, rtype, lookup_options)
    }

    async fn search(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        let info = match request.request_info() {
            Ok(info) => info,
            Err(e) => return (LookupControlFlow::Break(Err(e)), None),
        };
        let rtype = info.query.query_type();
        if matches!(rtype, RecordType::AXFR | RecordType::IXFR) {
            return (
                LookupControlFlow::Break(Err(LookupError::from(ResponseCode::Refused))),
                None,
            );
        }
        (self.answer(info.query.name(), rtype, lookup_options), None)
    }

    async fn nsec_records(
        &self,
        _name: &LowerName,
        _lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Continue(Ok(AuthLookup::default()))
    }
}
