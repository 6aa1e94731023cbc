//! CertificateSigningRequests (certificates.k8s.io/v1; approval and signing are in `csr`): only the typed schema.

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::typed::Typed;

pub(crate) struct CertificateSigningRequest;

impl Strategy for CertificateSigningRequest {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<
            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
        >())
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for CertificateSigningRequest {
    fn columns(&self) -> &'static [Col] {
        &[
            NAME,
            AGE,
            ("SignerName", "string", "", 0),
            ("Requestor", "string", "", 0),
            ("RequestedDuration", "string", "", 0),
            ("Condition", "string", "", 0),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        let age = age(o);
        let mut conds: Vec<&str> = o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("type").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if o.pointer("/status/certificate").is_some() {
            conds.push("Issued");
        }
        let duration = o
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .map(|secs| format!("{}m", secs / 60))
            .unwrap_or_else(|| "<none>".into());
        vec![
            name,
            age,
            json!(s(o, "/spec/signerName")),
            json!(s(o, "/spec/username")),
            json!(duration),
            json!(if conds.is_empty() {
                "Pending".to_string()
            } else {
                conds.join(",")
            }),
        ]
    }
}
