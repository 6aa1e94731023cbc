//! LimitRanges: the defaults of a Container item, the names and bounds of each item.

use serde_json::Value;

use super::hooks::{Columns, Strategy};
use crate::cells::prelude::*;
use crate::error::Cause;
use crate::typed::Typed;
use crate::validation::{duplicate, required_because, validate_resource_name, QUALIFIED_NAME_MSG};

pub(crate) struct LimitRange;

impl Strategy for LimitRange {
    fn typed(&self) -> Option<&'static dyn Typed> {
        Some(crate::typed::of::<k8s_openapi::api::core::v1::LimitRange>())
    }

    fn defaults(&self, obj: &mut Value) {
        limit_range_defaults(obj);
    }

    fn validate(&self, obj: &Value, causes: &mut Vec<Cause>) {
        validate_limit_range(obj, causes);
    }
}

/// `SetDefaults_LimitRangeItem`: a Container item's default limit is its max, its default
/// request the default limit, else the min; quantities canonical.
fn limit_range_defaults(obj: &mut Value) {
    let Some(Value::Array(items)) = obj.pointer_mut("/spec/limits") else {
        return;
    };
    for item in items.iter_mut().filter(|i| i.is_object()) {
        for f in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            if let Some(Value::Object(m)) = item.get_mut(f) {
                crate::quantity::canonicalize_map(m);
            }
        }
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Value, f: &str| item.get(f).and_then(Value::as_object).cloned();
        let max = get(item, "max").unwrap_or_default();
        let min = get(item, "min").unwrap_or_default();
        let mut default = get(item, "default").unwrap_or_default();
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut request = get(item, "defaultRequest").unwrap_or_default();
        for (k, v) in default.iter().chain(min.iter()) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !request.is_empty() {
            item["defaultRequest"] = Value::Object(request);
        }
    }
}

fn validate_limit_range(obj: &Value, causes: &mut Vec<Cause>) {
    let mut types = std::collections::BTreeSet::new();
    let limits = obj
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, item) in limits.iter().enumerate() {
        let idx = format!("spec.limits[{i}]");
        let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
        if !skiff_meta::selector::valid_label_key(ty) {
            causes.push(Cause::invalid(
                format!("{idx}.type"),
                ty,
                QUALIFIED_NAME_MSG,
            ));
        } else if !ty.contains('/') && !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            causes.push(Cause::invalid(
                format!("{idx}.type"),
                ty,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(ty.to_string()) {
            causes.push(duplicate(format!("{idx}.type"), ty));
        }
        let map = |field: &str| -> std::collections::BTreeMap<String, (i128, String)> {
            item.get(field)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            let t = v.as_str()?;
                            Some((
                                k.clone(),
                                (
                                    crate::quantity::milli_value(t)?,
                                    crate::quantity::canonicalize(t)?,
                                ),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let container_like = matches!(ty, "Pod" | "Container");
        let check_names = |field: &str, causes: &mut Vec<Cause>| {
            for k in item
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.keys())
            {
                let path = format!("{idx}.{field}[{k}]");
                if validate_resource_name(k, &path, causes)
                    && container_like
                    && !k.contains('/')
                    && !matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    && !k.starts_with("hugepages-")
                {
                    causes.push(Cause::invalid(
                        path,
                        k,
                        "must be a standard resource for containers",
                    ));
                }
            }
        };
        check_names("max", causes);
        check_names("min", causes);
        let (max, min) = (map("max"), map("min"));
        let (mut default, mut default_request) = (Default::default(), Default::default());
        let nonempty = |f: &str| {
            item.get(f)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        };
        if ty == "Pod" {
            for f in ["default", "defaultRequest"] {
                if nonempty(f) {
                    causes.push(Cause::forbidden(
                        format!("{idx}.{f}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        } else {
            check_names("default", causes);
            check_names("defaultRequest", causes);
            default = map("default");
            default_request = map("defaultRequest");
        }
        if ty == "PersistentVolumeClaim"
            && !min.contains_key("storage")
            && !max.contains_key("storage")
        {
            causes.push(required_because(
                format!("{idx}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        check_names("maxLimitRequestRatio", causes);
        let ratio = map("maxLimitRequestRatio");
        let keys: std::collections::BTreeSet<&String> = max
            .keys()
            .chain(min.keys())
            .chain(default.keys())
            .chain(default_request.keys())
            .chain(ratio.keys())
            .collect();
        for k in keys {
            let (mn, mx, df, dr, ra) = (
                min.get(k),
                max.get(k),
                default.get(k),
                default_request.get(k),
                ratio.get(k),
            );
            let at = |f: &str| format!("{idx}.{f}[{k}]");
            if let (Some(mn), Some(mx)) = (mn, mx) {
                if mn.0 > mx.0 {
                    causes.push(Cause::invalid(
                        at("min"),
                        &mn.1,
                        &format!("min value {} is greater than max value {}", mn.1, mx.1),
                    ));
                }
            }
            if let (Some(dr), Some(mn)) = (dr, mn) {
                if mn.0 > dr.0 {
                    causes.push(Cause::invalid(
                        at("defaultRequest"),
                        &dr.1,
                        &format!(
                            "min value {} is greater than default request value {}",
                            mn.1, dr.1
                        ),
                    ));
                }
            }
            if let (Some(dr), Some(mx)) = (dr, mx) {
                if dr.0 > mx.0 {
                    causes.push(Cause::invalid(
                        at("defaultRequest"),
                        &dr.1,
                        &format!(
                            "default request value {} is greater than max value {}",
                            dr.1, mx.1
                        ),
                    ));
                }
            }
            if let (Some(dr), Some(df)) = (dr, df) {
                if dr.0 > df.0 {
                    causes.push(Cause::invalid(
                        at("defaultRequest"),
                        &dr.1,
                        &format!(
                            "default request value {} is greater than default limit value {}",
                            dr.1, df.1
                        ),
                    ));
                }
            }
            if let (Some(df), Some(mn)) = (df, mn) {
                if mn.0 > df.0 {
                    causes.push(Cause::invalid(
                        at("default"),
                        &mn.1,
                        &format!("min value {} is greater than default value {}", mn.1, df.1),
                    ));
                }
            }
            if let (Some(df), Some(mx)) = (df, mx) {
                if df.0 > mx.0 {
                    causes.push(Cause::invalid(
                        at("default"),
                        &mx.1,
                        &format!("default value {} is greater than max value {}", df.1, mx.1),
                    ));
                }
            }
            if let Some(ra) = ra {
                if ra.0 < 1000 {
                    causes.push(Cause::invalid(
                        at("maxLimitRequestRatio"),
                        &ra.1,
                        &format!("ratio {} is less than 1", ra.1),
                    ));
                }
                if let (Some(mn), Some(mx)) = (mn, mx) {
                    if mn.0 > 0 {
                        let limit = mx.0 as f64 / mn.0 as f64;
                        if ra.0 as f64 / 1000.0 > limit {
                            causes.push(Cause::invalid(
                                at("maxLimitRequestRatio"),
                                &ra.1,
                                &format!("ratio {} is greater than max/min = {limit:.6}", ra.1),
                            ));
                        }
                    }
                }
            }
        }
    }
}

// What `kubectl get` prints (`super::Columns`).
impl Columns for LimitRange {
    fn columns(&self) -> &'static [Col] {
        &[NAME, ("Created At", "date", "", 0)]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let name = name(o);
        vec![name, json!(s(o, "/metadata/creationTimestamp"))]
    }
}
