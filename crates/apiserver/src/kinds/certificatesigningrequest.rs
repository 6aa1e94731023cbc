//! CertificateSigningRequests (certificates.k8s.io/v1; approval and signing are in `csr`): only the typed schema.

use super::Strategy;
use crate::typed::Typed;

pub(crate) struct CertificateSigningRequest;

impl Strategy for CertificateSigningRequest {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
        >())
    }
}
