//! `/api/v1/certificates`: TLS certificates the edges serve, uploaded as PEM. Keys are sealed
//! before they are committed and never come back out of the admin API.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::validate_id;
use kokoa_store::Certificate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{committed, new_id, removed, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ApiPath, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// A certificate to upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadCertificate {
    /// The leaf certificate first, then its intermediates (PEM).
    pub chain_pem: String,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// A certificate this one replaces (a renewal): removed in the same write.
    pub replaces: Option<String>,
}

/// A certificate as the admin API shows it: no key, no PEM.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateInfo {
    pub id: String,
    /// The DNS names it serves.
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// SHA-256 of the leaf (DER), hex.
    pub fingerprint: String,
    pub created_at: u64,
}

impl From<Certificate> for CertificateInfo {
    fn from(c: Certificate) -> Self {
        CertificateInfo {
            id: c.id,
            names: c.names,
            not_before: c.not_before,
            not_after: c.not_after,
            fingerprint: c.fingerprint,
            created_at: c.created_at,
        }
    }
}

/// Uploads a certificate; every edge serves it for its names once it pulls.
#[utoipa::path(
    post,
    path = "/api/v1/certificates",
    operation_id = "upload_certificate",
    tag = "certificates",
    request_body = UploadCertificate,
    responses(
        (status = 201, description = "The certificate", body = CertificateInfo,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn upload(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<UploadCertificate>,
) -> Result<Response, ApiError> {
    if let Some(id) = &req.replaces {
        validate_id(id)?;
    }
    let now = unix_now();
    let checked = crate::certs::check(&req.chain_pem, &req.key_pem, now)?;
    let certificate = Certificate {
        id: new_id("c"),
        names: checked.names,
        chain_pem: req.chain_pem,
        sealed_key: ctx.sealer.seal(&req.key_pem),
        not_before: checked.not_before,
        not_after: checked.not_after,
        fingerprint: checked.fingerprint,
        created_at: now,
    };
    let cmd = Command::CreateCertificate {
        certificate: certificate.clone(),
        replaces: req.replaces,
    };
    let index = ctx.write(cmd).await?;
    Ok(committed(
        StatusCode::CREATED,
        index,
        Some(CertificateInfo::from(certificate)),
    ))
}

/// The certificates, by id.
#[utoipa::path(
    get,
    path = "/api/v1/certificates",
    operation_id = "list_certificates",
    tag = "certificates",
    params(ReadQuery),
    responses(
        (status = 200, description = "The certificates", body = Items<CertificateInfo>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<CertificateInfo>>, ApiError> {
    let all = ctx.read(mode, |r| r.certificates()).await?;
    Ok(Json(Items {
        items: all.into_iter().map(CertificateInfo::from).collect(),
    }))
}

/// One certificate.
#[utoipa::path(
    get,
    path = "/api/v1/certificates/{id}",
    operation_id = "get_certificate",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id"), ReadQuery),
    responses(
        (status = 200, description = "The certificate", body = CertificateInfo),
        crate::openapi::RecordErrors,
    )
)]
pub async fn get(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<String>,
    mode: ReadMode,
) -> Result<Json<CertificateInfo>, ApiError> {
    validate_id(&id).map_err(|_| ApiError::not_found("certificate"))?;
    ctx.read(mode, move |r| r.certificate(&id))
        .await?
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::not_found("certificate"))
}

/// Removes a certificate; edges fall back to a self-signed one for its names.
#[utoipa::path(
    delete,
    path = "/api/v1/certificates/{id}",
    operation_id = "delete_certificate",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    responses(
        crate::openapi::Removed,
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    removed(&ctx, Command::DeleteCertificate { id }).await
}
