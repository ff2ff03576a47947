//! Keeps what operators are handed in step with [`CATALOG`]: the metric table of `docs/observability.md`, the
//! Grafana dashboard (`deploy/grafana/turnpike-dashboard.json`) and the Prometheus alert rules
//! (`deploy/prometheus/turnpike-alerts.yaml`).
//!
//! Every PromQL expression is checked with a small tokenizer, not a full PromQL parser: every `turnpike_*` name must
//! be a sample name the catalog exposes, every label in a selector, `by`/`without`/`on`/`ignoring`/`group_*` clause,
//! `label_values(...)` call, legend or alert template must be one the metrics carry, and values of the closed label
//! sets (status classes, methods, outcomes, reasons, error types, ...) must exist. The checker's own tests below show
//! it rejects each kind of mistake.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use http::HeaderValue;
use serde_json::Value;
use turnpike_config::{Node, NodeKind, SourceMap};
use turnpike_core::{ErrorSide, ForbiddenKind, GatewayError};

use super::*;

fn repo_file(relative: &str) -> String {
    let path = format!("{}/../../{relative}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {path}: {err}"))
}

/// Labels Prometheus adds to every series of a scrape target.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Aggregation operators (which take `by`/`without`).
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];

// ---------------------------------------------------------------------------------------------------------------
// What the catalog exposes

/// One sample name a scrape can contain.
#[derive(Debug, Clone, Copy)]
struct Sample {
    def: &'static MetricDef,
    /// `_bucket` samples also carry `le`.
    bucket: bool,
}

impl Sample {
    fn has_label(&self, label: &str) -> bool {
        self.def.labels.contains(&label) || TARGET_LABELS.contains(&label) || (self.bucket && label == "le")
    }
}

/// Every exposed sample name, derived from [`CATALOG`] with the exposition's suffix rules.
fn samples() -> BTreeMap<String, Sample> {
    let mut out = BTreeMap::new();
    for def in CATALOG {
        let names: Vec<(String, bool)> = match def.kind {
            Kind::Counter => vec![(format!("{}_total", def.name), false)],
            Kind::Info => vec![(format!("{}_info", def.name), false)],
            Kind::Gauge => vec![(def.name.to_string(), false)],
            Kind::Histogram => vec![
                (format!("{}_bucket", def.name), true),
                (format!("{}_sum", def.name), false),
                (format!("{}_count", def.name), false),
            ],
        };
        for (name, bucket) in names {
            let previous = out.insert(name.clone(), Sample { def, bucket });
            assert!(previous.is_none(), "two catalog metrics expose the sample `{name}`");
        }
    }
    out
}

/// Every `GatewayError`, one of each variant (and of each `ForbiddenKind`).
fn every_gateway_error() -> Vec<GatewayError> {
    let upstream: Arc<str> = Arc::from("u");
    let second = std::time::Duration::from_secs(1);
    let errors = vec![
        GatewayError::NoRoute,
        GatewayError::MethodNotAllowed { allow: HeaderValue::from_static("GET") },
        GatewayError::InvalidPath("x"),
        GatewayError::BadRequest("x"),
        GatewayError::HeadersTooLarge { limit: 1 },
        GatewayError::UriTooLong { limit: 1 },
        GatewayError::TooManyHeaders { limit: 1 },
        GatewayError::PayloadTooLarge { limit: 1 },
        GatewayError::ClientTimeout,
        GatewayError::ClientAborted,
        GatewayError::Unauthenticated { challenge: HeaderValue::from_static("Bearer"), missing: true },
        GatewayError::Forbidden { kind: ForbiddenKind::Authorization },
        GatewayError::Forbidden { kind: ForbiddenKind::Address },
        GatewayError::Forbidden { kind: ForbiddenKind::Origin },
        GatewayError::AuthUnavailable { service: "jwks" },
        GatewayError::InvalidBody { errors: Vec::new() },
        GatewayError::UnsupportedMediaType { expected: "application/json" },
        GatewayError::RateLimited { retry_after: second },
        GatewayError::NoHealthyEndpoint { upstream: upstream.clone() },
        GatewayError::CircuitOpen { upstream: upstream.clone(), retry_after: second },
        GatewayError::UpstreamOverloaded { upstream: upstream.clone() },
        GatewayError::UpstreamConnect { upstream: upstream.clone() },
        GatewayError::UpstreamTimeout { upstream: upstream.clone(), timeout: second },
        GatewayError::BadGateway { upstream },
        GatewayError::ShuttingDown,
        GatewayError::Internal,
    ];
    // No wildcard: a new variant (or forbidden kind) stops this from compiling until it is listed above, and then
    // the dashboard's "Who failed" panel must classify its error type.
    for err in &errors {
        match err {
            GatewayError::NoRoute
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::InvalidPath(_)
            | GatewayError::BadRequest(_)
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::UriTooLong { .. }
            | GatewayError::TooManyHeaders { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::ClientTimeout
            | GatewayError::ClientAborted
            | GatewayError::Unauthenticated { .. }
            | GatewayError::Forbidden {
                kind: ForbiddenKind::Authorization | ForbiddenKind::Address | ForbiddenKind::Origin,
            }
            | GatewayError::AuthUnavailable { .. }
            | GatewayError::InvalidBody { .. }
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::CircuitOpen { .. }
            | GatewayError::UpstreamOverloaded { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::BadGateway { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Internal => {}
        }
    }
    errors
}

fn error_types(keep: impl Fn(&GatewayError) -> bool) -> BTreeSet<String> {
    every_gateway_error().iter().filter(|e| keep(e)).map(|e| e.slug().to_string()).collect()
}

/// The values a label of a closed set can have, when it has one.
fn closed_set(label: &str) -> Option<BTreeSet<String>> {
    let set = |values: &[&str]| values.iter().map(|v| v.to_string()).collect();
    match label {
        "status_class" => Some(set(&STATUS_CLASSES)),
        "method" => Some(set(&METHODS)),
        "outcome" => Some(set(&RATE_LIMIT_OUTCOMES)),
        "reason" => Some(set(&AUTH_REASONS)),
        "error_type" => Some(error_types(|_| true)),
        // Written by the admin listener (`turnpike-gateway/src/admin.rs`).
        "result" => Some(set(&["success", "failure"])),
        "state" => Some(set(&["closed", "open", "half_open"])),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A PromQL tokenizer, enough to find names, selectors and label lists

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A number, duration or Grafana variable (`$route`, `${DS}`).
    Value,
    /// A `[...]` range or subquery, skipped whole.
    Range,
    Punct(String),
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string in `{expr}`")),
                    Some(&q) if q == c => break,
                    Some('\\') if c != '`' => {
                        s.push(*chars.get(i + 1).ok_or_else(|| format!("unterminated string in `{expr}`"))?);
                        i += 2;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            i += 1;
            toks.push(Tok::Str(s));
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            if i == chars.len() {
                return Err(format!("unclosed `[` in `{expr}`"));
            }
            i += 1;
            toks.push(Tok::Range);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Value);
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            toks.push(Tok::Value);
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            if ["==", "!=", "=~", "!~", ">=", "<="].contains(&two.as_str()) {
                toks.push(Tok::Punct(two));
                i += 2;
            } else {
                toks.push(Tok::Punct(c.to_string()));
                i += 1;
            }
        }
    }
    Ok(toks)
}

fn is_punct(tok: Option<&Tok>, p: &str) -> bool {
    matches!(tok, Some(Tok::Punct(x)) if x == p)
}

/// The index just past the `)` matching the `(` at `open`.
fn close_paren(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, tok) in toks.iter().enumerate().skip(open) {
        if is_punct(Some(tok), "(") {
            depth += 1;
        } else if is_punct(Some(tok), ")") {
            depth -= 1;
            if depth == 0 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The labels of a `(a, b)` list starting at `open`, and the index past it.
fn label_list(toks: &[Tok], open: usize) -> Option<(Vec<String>, usize)> {
    if !is_punct(toks.get(open), "(") {
        return None;
    }
    let end = close_paren(toks, open)?;
    let labels = toks[open + 1..end - 1]
        .iter()
        .filter_map(|t| match t {
            Tok::Ident(l) | Tok::Str(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    Some((labels, end))
}

/// One `label op "value"` of a selector.
#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// What one expression uses, and what is wrong with it.
#[derive(Debug, Default)]
struct ExprReport {
    /// Every `turnpike_*` sample name, in order.
    metrics: Vec<String>,
    matchers: Vec<Matcher>,
    problems: Vec<String>,
}

impl ExprReport {
    /// Every label the expression's metrics carry (with the target labels).
    fn labels(&self, samples: &BTreeMap<String, Sample>) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        for m in &self.metrics {
            if let Some(s) = samples.get(m) {
                out.extend(s.def.labels.iter().map(|l| l.to_string()));
                if s.bucket {
                    out.insert("le".into());
                }
            }
        }
        out
    }

    /// The values `label` is selected by (`=`, `=~` with alternatives split), across every selector.
    fn values_of(&self, label: &str) -> BTreeSet<String> {
        self.matchers
            .iter()
            .filter(|m| m.label == label && (m.op == "=" || m.op == "=~"))
            .flat_map(|m| m.value.split('|').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }
}

/// Every `turnpike_...` word of `text` (stopping at the first character that cannot be in a metric name).
fn turnpike_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("turnpike_") {
        let start = from + pos;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "turnpike_".len();
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':') {
            end += 1;
        }
        if boundary {
            out.push(text[start..end].to_string());
        }
        from = end;
    }
    out
}

/// Checks one PromQL expression (or a Grafana `label_values(...)` query) against the catalog.
fn check_expr(expr: &str, samples: &BTreeMap<String, Sample>) -> ExprReport {
    let mut report = ExprReport::default();
    for name in turnpike_names(expr) {
        if !samples.contains_key(&name) {
            report.problems.push(format!("`{name}` is not a sample name of any catalog metric"));
        }
        report.metrics.push(name);
    }
    let toks = match tokenize(expr) {
        Ok(toks) => toks,
        Err(err) => {
            report.problems.push(err);
            return report;
        }
    };
    let opens = toks.iter().filter(|t| is_punct(Some(t), "(")).count();
    let closes = toks.iter().filter(|t| is_punct(Some(t), ")")).count();
    if opens != closes {
        report.problems.push(format!("{opens} `(` but {closes} `)`"));
        return report;
    }
    let all_labels = report.labels(samples);
    let metrics_in = |range: &[Tok]| -> Vec<(String, Sample)> {
        range
            .iter()
            .filter_map(|t| match t {
                Tok::Ident(name) => samples.get(name).map(|s| (name.clone(), *s)),
                _ => None,
            })
            .collect()
    };

    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            // A selector: `turnpike_x{label op "value", ...}`.
            Tok::Ident(name) if name.starts_with("turnpike_") && is_punct(toks.get(i + 1), "{") => {
                let sample = samples.get(name);
                let mut j = i + 2;
                while !is_punct(toks.get(j), "}") {
                    match (toks.get(j), toks.get(j + 1), toks.get(j + 2)) {
                        (Some(Tok::Ident(label)), Some(Tok::Punct(op)), Some(Tok::Str(value)))
                            if ["=", "!=", "=~", "!~"].contains(&op.as_str()) =>
                        {
                            if let Some(sample) = sample
                                && !sample.has_label(label)
                            {
                                report.problems.push(format!("`{name}` has no label `{label}`"));
                            }
                            check_value(label, op, value, &mut report.problems);
                            report.matchers.push(Matcher {
                                label: label.clone(),
                                op: op.clone(),
                                value: value.clone(),
                            });
                            j += 3;
                            if is_punct(toks.get(j), ",") {
                                j += 1;
                            }
                        }
                        _ => {
                            report.problems.push(format!("cannot read the selector of `{name}`"));
                            break;
                        }
                    }
                }
                i = j + 1;
                continue;
            }
            // `sum by (a, b) (...)`, `sum(...) by (a, b)` and the same with `without`.
            Tok::Ident(agg) if AGGREGATIONS.contains(&agg.as_str()) => {
                let (labels, group) = match toks.get(i + 1) {
                    Some(Tok::Ident(kw)) if kw == "by" || kw == "without" => {
                        let Some((labels, after)) = label_list(&toks, i + 2) else {
                            report.problems.push(format!("`{agg} {kw}` without a label list"));
                            break;
                        };
                        let group_end = close_paren(&toks, after).unwrap_or(after);
                        (labels, after..group_end)
                    }
                    _ if is_punct(toks.get(i + 1), "(") => {
                        let group_end = close_paren(&toks, i + 1).unwrap_or(i + 1);
                        match toks.get(group_end) {
                            Some(Tok::Ident(kw)) if kw == "by" || kw == "without" => {
                                (label_list(&toks, group_end + 1).map(|(l, _)| l).unwrap_or_default(), i + 1..group_end)
                            }
                            _ => (Vec::new(), i + 1..group_end),
                        }
                    }
                    _ => (Vec::new(), i..i),
                };
                for (name, metric) in metrics_in(&toks[group]) {
                    for label in labels.iter().filter(|l| !metric.has_label(l)) {
                        report.problems.push(format!("`{agg}` groups by `{label}`, which `{name}` does not have"));
                    }
                }
            }
            // Vector matching: the labels must exist on some metric of the expression.
            Tok::Ident(kw) if ["on", "ignoring", "group_left", "group_right"].contains(&kw.as_str()) => {
                if let Some((labels, _)) = label_list(&toks, i + 1) {
                    for label in labels.iter().filter(|l| !all_labels.contains(*l)) {
                        report.problems.push(format!("`{kw}({label})`: no metric of the expression has `{label}`"));
                    }
                }
            }
            // Grafana: `label_values(metric{...}, label)`.
            Tok::Ident(f) if f == "label_values" && is_punct(toks.get(i + 1), "(") => {
                let end = close_paren(&toks, i + 1).unwrap_or(i + 1);
                if let Some(Tok::Ident(label)) = toks.get(end.saturating_sub(2)) {
                    for (name, metric) in metrics_in(&toks[i + 1..end]) {
                        if !metric.has_label(label) {
                            report.problems.push(format!("label_values: `{name}` has no label `{label}`"));
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    report
}

/// A matcher's value must be one of its label's closed set; regexes are checked when they are plain alternatives
/// (`a|b`), values with Grafana variables are not.
fn check_value(label: &str, op: &str, value: &str, problems: &mut Vec<String>) {
    let Some(set) = closed_set(label) else { return };
    if value.contains('$') {
        return;
    }
    let alternatives: Vec<&str> = if op == "=" || op == "!=" {
        vec![value]
    } else if value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|')) {
        value.split('|').collect()
    } else {
        return;
    };
    for alternative in alternatives {
        if !set.contains(alternative) {
            problems.push(format!("`{label}` is never `{alternative}` (it is one of {set:?})"));
        }
    }
}

/// The labels a legend (`{{route}}`) or alert template (`{{ $labels.route }}`) refers to.
fn template_labels(template: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else { break };
        let inner = rest[open + 2..open + close].trim();
        let is_label = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if prefix.is_empty() {
            // A legend: `{{route}}`.
            if is_label(inner) {
                out.push(inner.to_string());
            }
        } else {
            // A Go template: `{{ $labels.route }}`, possibly several in one action.
            for (pos, _) in inner.match_indices(prefix) {
                let name = &inner[pos + prefix.len()..];
                let end = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(name.len());
                out.push(name[..end].to_string());
            }
        }
        rest = &rest[open + close + 2..];
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// docs/observability.md

const BEGIN: &str = "<!-- metrics:begin -->\n";
const END: &str = "<!-- metrics:end -->";

#[test]
fn the_metric_table_in_the_docs_is_the_catalog() {
    let doc = repo_file("docs/observability.md");
    let expected = catalog_markdown();
    let regenerate = format!(
        "docs/observability.md is stale: run `TURNPIKE_BLESS=1 cargo nextest run -p turnpike-telemetry \
         the_metric_table_in_the_docs_is_the_catalog`, or replace the lines between `<!-- metrics:begin -->` and \
         `<!-- metrics:end -->` (under `## Metrics`) with exactly these (`catalog_markdown()`):\n\n\
         {BEGIN}{expected}{END}\n"
    );
    if std::env::var_os("TURNPIKE_BLESS").is_some()
        && let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END))
    {
        // Regenerate the table in place (the check below then passes).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/observability.md");
        let blessed = format!("{}{expected}{}", &doc[..start + BEGIN.len()], &doc[end..]);
        std::fs::write(&path, &blessed).unwrap();
        return;
    }
    assert_eq!(doc.matches(BEGIN).count(), 1, "one `<!-- metrics:begin -->` line\n{regenerate}");
    assert_eq!(doc.matches(END).count(), 1, "one `<!-- metrics:end -->` line\n{regenerate}");
    let start = doc.find(BEGIN).unwrap() + BEGIN.len();
    let end = doc.find(END).unwrap();
    assert!(start <= end && doc[..end].ends_with('\n'), "the markers must be on lines of their own\n{regenerate}");
    let metrics_heading = doc.find("\n## Metrics\n").expect("docs/observability.md has a `## Metrics` section");
    assert!(metrics_heading < start, "the table is under `## Metrics`\n{regenerate}");
    assert!(doc[start..end] == expected, "{regenerate}");
}

#[test]
fn the_docs_describe_every_alert_and_link_the_deploy_files() {
    let doc = repo_file("docs/observability.md");
    for name in alerts().keys() {
        assert!(doc.contains(&format!("`{name}`")), "docs/observability.md does not describe alert `{name}`");
    }
    for file in ["deploy/grafana/turnpike-dashboard.json", "deploy/prometheus/turnpike-alerts.yaml"] {
        assert!(doc.contains(&format!("(../{file})")), "docs/observability.md links {file}");
    }
    for endpoint in ["/metrics", "/healthz", "/readyz", "/status"] {
        assert!(doc.contains(&format!("`GET {endpoint}`")), "docs/observability.md lists {endpoint}");
    }
    assert!(repo_file("README.md").contains("(docs/observability.md)"), "README.md links docs/observability.md");
}

// ---------------------------------------------------------------------------------------------------------------
// deploy/grafana/turnpike-dashboard.json

const DS: &str = "${DS_PROMETHEUS}";

fn dashboard() -> Value {
    serde_json::from_str(&repo_file("deploy/grafana/turnpike-dashboard.json"))
        .expect("deploy/grafana/turnpike-dashboard.json is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("")
}

/// Every string of a JSON value with where it is.
fn strings<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((at, s)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| strings(v, format!("{at}[{i}]"), out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| strings(v, format!("{at}.{k}"), out)),
        _ => {}
    }
}

/// Every query of the dashboard with where it is: panel targets, annotations and template variables.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for (i, target) in panel["targets"].as_array().into_iter().flatten().enumerate() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((format!("panel `{}` target {i}", title(panel)), expr.to_string()));
            }
        }
    }
    for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push((format!("annotation `{}`", annotation["name"]), expr.to_string()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] == "query" {
            let at = format!("variable `{}`", variable["name"]);
            if let Some(q) = variable["definition"].as_str() {
                out.push((at.clone(), q.to_string()));
            }
            match &variable["query"] {
                Value::String(q) => out.push((at, q.clone())),
                q => out.extend(q["query"].as_str().map(|q| (at, q.to_string()))),
            }
        }
    }
    out
}

#[test]
fn every_dashboard_query_uses_catalog_metrics_and_their_labels() {
    let samples = samples();
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 30, "only {} queries found: is the dashboard walked correctly?", queries.len());
    let mut problems = Vec::new();
    for (at, expr) in &queries {
        let report = check_expr(expr, &samples);
        if report.metrics.is_empty() {
            problems.push(format!("{at}: no Turnpike metric in `{expr}`"));
        }
        problems.extend(report.problems.iter().map(|p| format!("{at}: {p}\n    in `{expr}`")));
    }
    // Legends name labels the query's metrics have.
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let (Some(expr), Some(legend)) = (target["expr"].as_str(), target["legendFormat"].as_str()) else {
                continue;
            };
            let labels = check_expr(expr, &samples).labels(&samples);
            for label in template_labels(legend, "").into_iter().filter(|l| !labels.contains(l)) {
                problems.push(format!(
                    "panel `{}`: legend `{legend}` names `{label}`, not a label of `{expr}`",
                    title(panel)
                ));
            }
        }
    }
    // Titles and descriptions may name metric families too, but nothing else.
    let mut texts = Vec::new();
    strings(&dashboard, String::from("$"), &mut texts);
    for (at, text) in texts {
        for name in turnpike_names(text) {
            if !samples.contains_key(&name) && !CATALOG.iter().any(|d| d.name == name) {
                problems.push(format!("{at}: `{name}` is not a catalog metric"));
            }
        }
    }
    assert!(problems.is_empty(), "deploy/grafana/turnpike-dashboard.json:\n{}", problems.join("\n"));
}

#[test]
fn the_dashboard_is_importable_and_uses_the_datasource_variable() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion 36 or later");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()), "a title");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "a uid of at most 40 chars");
    assert!(dashboard["id"].is_null(), "no database id (import assigns one)");

    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("a `{name}` template variable"))
    };
    let ds = variable("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for (name, label) in [("route", "route"), ("upstream", "upstream"), ("instance", "instance")] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "`{name}` is a query variable");
        assert_eq!(v["datasource"]["uid"], DS, "`{name}` queries ${{DS_PROMETHEUS}}");
        let definition = v["definition"].as_str().unwrap_or("");
        assert!(
            definition.starts_with("label_values(") && definition.ends_with(&format!(", {label})")),
            "`{name}` is filled from label_values(..., {label}): {definition}"
        );
        assert_eq!(v["query"]["query"].as_str(), Some(definition), "`{name}`: query and definition agree");
    }

    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("panel `{}` has an id", title(panel)));
        assert!(ids.insert(id), "panel id {id} is used twice");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "panel `{}` has gridPos.{key}", title(panel));
        }
        let x_end = panel["gridPos"]["x"].as_u64().unwrap_or(0) + panel["gridPos"]["w"].as_u64().unwrap_or(0);
        assert!(x_end <= 24, "panel `{}` is wider than the grid", title(panel));
        if panel["type"] == "row" {
            continue;
        }
        assert!(!title(panel).is_empty(), "panel {id} has a title");
        assert_eq!(panel["datasource"]["uid"], DS, "panel `{}` uses ${{DS_PROMETHEUS}}", title(panel));
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        let targets = targets.unwrap_or_else(|| panic!("panel `{}` has targets", title(panel)));
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], DS, "panel `{}`: a target uses ${{DS_PROMETHEUS}}", title(panel));
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel `{}`: an empty target",
                title(panel)
            );
            let r =
                target["refId"].as_str().unwrap_or_else(|| panic!("panel `{}`: a target without refId", title(panel)));
            assert!(refs.insert(r), "panel `{}`: refId {r} twice", title(panel));
        }
    }
    // No data source is named any other way than through the variable.
    let mut texts = Vec::new();
    strings(&dashboard, String::from("$"), &mut texts);
    for (at, text) in texts {
        if at.ends_with(".datasource.uid") {
            assert!(text == DS || text == "-- Grafana --", "{at} is `{text}`: use ${{DS_PROMETHEUS}}");
        }
    }
}

#[test]
fn the_dashboard_has_the_panels_an_operator_needs() {
    let dashboard = dashboard();
    let all = panels(&dashboard);
    let panel = |title_start: &str| {
        *all.iter()
            .find(|p| p["type"] != "row" && title(p).starts_with(title_start))
            .unwrap_or_else(|| panic!("the dashboard has no panel titled `{title_start}...`"))
    };
    let exprs = |p: &Value| -> Vec<String> {
        p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    // Each panel with a metric (sample name) and a grouping its queries must use.
    let required: [(&str, &str, &str); 22] = [
        ("Request rate by route and status class", "turnpike_http_requests_total", "by (route, status_class)"),
        ("5xx error ratio by route", "turnpike_http_requests_total", "by (route)"),
        ("4xx error ratio by route", "turnpike_http_requests_total", "by (route)"),
        ("Request latency p50 / p95 / p99 by route", "turnpike_http_request_duration_seconds_bucket", "by (le, route)"),
        ("Upstream response time", "turnpike_upstream_response_duration_seconds_bucket", "by (le, upstream)"),
        ("Upstream attempts vs retries", "turnpike_upstream_retries_total", "by (upstream)"),
        ("Upstream retry ratio", "turnpike_upstream_attempts_total", "by (upstream)"),
        ("Errors by type", "turnpike_http_errors_total", "by (error_type)"),
        ("Who failed", "turnpike_http_errors_total", "sum("),
        ("Errors by route and type", "turnpike_http_errors_total", "by (route, error_type)"),
        ("Endpoint health", "turnpike_upstream_endpoint_healthy", "by (upstream, endpoint)"),
        ("Circuit breaker state", "turnpike_upstream_circuit_breaker_state", "by (upstream, endpoint)"),
        ("Healthy endpoints per upstream", "turnpike_upstream_healthy_endpoints", "by (upstream)"),
        ("Upstream connections open", "turnpike_upstream_connections_open", "by (upstream, endpoint)"),
        ("Connection reuse ratio", "turnpike_upstream_connection_reuses_total", "by (upstream)"),
        ("Rate-limit decisions by outcome", "turnpike_rate_limit_decisions_total", "outcome)"),
        ("Auth failures by reason", "turnpike_auth_failures_total", "reason)"),
        ("In-flight requests and downstream connections", "turnpike_http_requests_in_flight", "by (instance)"),
        ("In-flight requests and downstream connections", "turnpike_downstream_connections_open", "by (instance)"),
        ("Config reloads", "turnpike_config_reloads_total", "by (result)"),
        ("Config info", "turnpike_config_info", "hash, generation"),
        ("Access-log records dropped", "turnpike_access_log_dropped_total", "rate("),
    ];
    for (title_start, metric, grouping) in required {
        let exprs = exprs(panel(title_start));
        assert!(
            exprs.iter().any(|e| turnpike_names(e).contains(&metric.to_string()) && e.contains(grouping)),
            "panel `{title_start}...` has no query of `{metric}` with `{grouping}`: {exprs:#?}"
        );
    }
    let latency = exprs(panel("Request latency p50 / p95 / p99 by route"));
    for q in ["0.5", "0.95", "0.99"] {
        let wanted =
            format!("histogram_quantile({q}, sum by (le, route) (rate(turnpike_http_request_duration_seconds_bucket{{");
        assert!(latency.iter().any(|e| e.starts_with(&wanted)), "the latency panel has no `{wanted}...`: {latency:#?}");
    }

    // "Is it us or the backend": each series of the panel is exactly one side's error types.
    let samples = samples();
    let who = panel("Who failed");
    let sides: [(&str, BTreeSet<String>); 4] = [
        ("upstream unreachable", error_types(|e| e.side() == ErrorSide::Upstream)),
        ("upstream answered 5xx", error_types(|e| e.status().is_server_error())),
        ("gateway", error_types(|e| e.side() == ErrorSide::Gateway)),
        ("client", error_types(|e| e.side() == ErrorSide::Client)),
    ];
    for (legend, expected) in sides {
        let target = who["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["legendFormat"].as_str().is_some_and(|l| l.starts_with(legend)))
            .unwrap_or_else(|| panic!("`Who failed` has no series `{legend}...`"));
        let report = check_expr(target["expr"].as_str().unwrap_or(""), &samples);
        assert_eq!(report.values_of("error_type"), expected, "`Who failed`, series `{legend}`: its error types");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// deploy/prometheus/turnpike-alerts.yaml

fn rules_tree() -> Node {
    let text = repo_file("deploy/prometheus/turnpike-alerts.yaml");
    let mut sources = SourceMap::new();
    let (tree, errors) =
        turnpike_config::parse_str(&mut sources, "turnpike-alerts.yaml", &text, std::path::Path::new("."));
    assert!(errors.is_empty(), "deploy/prometheus/turnpike-alerts.yaml:\n{}", {
        errors.iter().map(|e| e.render(&sources)).collect::<Vec<_>>().join("\n")
    });
    tree.expect("deploy/prometheus/turnpike-alerts.yaml is YAML")
}

fn entries(node: &Node) -> &[(Node, Node)] {
    match &node.kind {
        NodeKind::Map(entries) => entries,
        _ => &[],
    }
}

fn items(node: &Node) -> &[Node] {
    match &node.kind {
        NodeKind::Seq(items) => items,
        _ => &[],
    }
}

fn keys(node: &Node) -> Vec<&str> {
    entries(node).iter().filter_map(|(k, _)| k.as_str()).collect()
}

/// A Prometheus duration: `10m`, `1h30m`, `0s`.
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "y", "w", "d", "h", "m", "s"].into_iter().find(|u| rest.starts_with(u)) else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// Every alerting rule by name, checked for shape: group name and rules; each rule's alert, expr, for,
/// labels.severity, annotations.summary and .description.
fn alerts() -> BTreeMap<String, Node> {
    let tree = rules_tree();
    assert_eq!(keys(&tree), ["groups"], "the rules file is `groups:` only");
    let groups = items(tree.get("groups").unwrap());
    assert!(!groups.is_empty(), "`groups` is a non-empty list");
    let mut group_names = BTreeSet::new();
    let mut out = BTreeMap::new();
    for group in groups {
        let line = group.span.line;
        for key in keys(group) {
            assert!(
                ["name", "interval", "limit", "query_offset", "labels", "rules"].contains(&key),
                "line {line}: a group has no `{key}`"
            );
        }
        let name = group.get("name").and_then(Node::as_str).unwrap_or_else(|| panic!("line {line}: group name"));
        assert!(group_names.insert(name.to_string()), "group `{name}` twice");
        let rules = items(group.get("rules").unwrap_or_else(|| panic!("group `{name}` has `rules`")));
        assert!(!rules.is_empty(), "group `{name}` has rules");
        for rule in rules {
            let line = rule.span.line;
            for key in keys(rule) {
                assert!(
                    ["alert", "expr", "for", "keep_firing_for", "labels", "annotations"].contains(&key),
                    "line {line}: an alerting rule has no `{key}`"
                );
            }
            let alert = rule.get("alert").and_then(Node::as_str).unwrap_or_else(|| panic!("line {line}: `alert`"));
            assert!(
                alert.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && alert.starts_with(|c: char| c.is_ascii_alphabetic()),
                "line {line}: `{alert}` is not a valid alert name"
            );
            let expr = rule.get("expr").and_then(Node::as_str).unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{alert}: `expr`");
            let for_ = rule.get("for").and_then(Node::as_str).unwrap_or_default();
            assert!(is_duration(for_), "{alert}: `for` is a duration like 10m, not `{for_}`");
            let severity = rule.get("labels").and_then(|l| l.get("severity")).and_then(Node::as_str);
            assert!(
                severity.is_some_and(|s| ["critical", "warning", "info"].contains(&s)),
                "{alert}: labels.severity is critical, warning or info, not {severity:?}"
            );
            let annotations = rule.get("annotations").unwrap_or_else(|| panic!("{alert}: `annotations`"));
            for key in ["summary", "description"] {
                let text = annotations.get(key).and_then(Node::as_str).unwrap_or_default();
                assert!(!text.trim().is_empty(), "{alert}: annotations.{key}");
            }
            for (key, value) in entries(annotations).iter().chain(entries(rule.get("labels").unwrap())) {
                assert!(value.as_str().is_some(), "{alert}: {:?} is a string", key.as_str());
            }
            assert!(out.insert(alert.to_string(), rule.clone()).is_none(), "alert `{alert}` twice");
        }
    }
    out
}

#[test]
fn every_alert_rule_uses_catalog_metrics_and_their_labels() {
    let samples = samples();
    let alerts = alerts();
    let mut problems = Vec::new();
    for (name, rule) in &alerts {
        let expr = rule.get("expr").and_then(Node::as_str).unwrap_or_default();
        let report = check_expr(expr, &samples);
        if report.metrics.is_empty() {
            problems.push(format!("{name}: no Turnpike metric in `{expr}`"));
        }
        problems.extend(report.problems.iter().map(|p| format!("{name}: {p}")));
        let labels = report.labels(&samples);
        for (key, value) in entries(rule.get("annotations").unwrap()) {
            let text = value.as_str().unwrap_or_default();
            for label in template_labels(text, "$labels.").into_iter().filter(|l| !labels.contains(l)) {
                problems.push(format!("{name}: annotations.{} uses $labels.{label}, not a label of the expr", {
                    key.as_str().unwrap_or("")
                }));
            }
            for metric in turnpike_names(text) {
                if !samples.contains_key(&metric) && !CATALOG.iter().any(|d| d.name == metric) {
                    problems.push(format!("{name}: annotations name `{metric}`, not a catalog metric"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "deploy/prometheus/turnpike-alerts.yaml:\n{}", problems.join("\n"));
}

#[test]
fn the_alert_rules_cover_what_an_operator_is_woken_for() {
    let alerts = alerts();
    let samples = samples();
    let required = [
        ("TurnpikeRouteHigh5xxRatio", "turnpike_http_requests_total", "by (route)"),
        ("TurnpikeRouteHighP99Latency", "turnpike_http_request_duration_seconds_bucket", "by (le, route)"),
        ("TurnpikeCircuitBreakerOpen", "turnpike_upstream_circuit_breaker_state", "state=\"open\""),
        ("TurnpikeConfigReloadFailed", "turnpike_config_reloads_total", "result=\"failure\""),
        ("TurnpikeRateLimitSaturation", "turnpike_rate_limit_decisions_total", "by (route)"),
        ("TurnpikeUpstreamNoHealthyEndpoint", "turnpike_upstream_healthy_endpoints", "== 0"),
        ("TurnpikeUpstreamHighRetryRatio", "turnpike_upstream_retries_total", "by (upstream)"),
        ("TurnpikeAccessLogDropped", "turnpike_access_log_dropped_total", "increase("),
    ];
    for (name, metric, fragment) in required {
        let rule = alerts.get(name).unwrap_or_else(|| panic!("no alert `{name}`"));
        let expr = rule.get("expr").and_then(Node::as_str).unwrap_or_default();
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            turnpike_names(&expr).contains(&metric.to_string()) && expr.contains(fragment),
            "{name} should use `{metric}` with `{fragment}`: {expr}"
        );
    }
    // Thresholds are explained where the alert is read.
    for (name, rule) in &alerts {
        let description = rule.get("annotations").and_then(|a| a.get("description")).and_then(Node::as_str);
        assert!(
            description.is_some_and(|d| d.contains("Threshold: ")),
            "{name}: the description says what the threshold is (`Threshold: ...`)"
        );
    }
    // Refused decisions are the refused outcomes.
    let saturation = check_expr(
        alerts["TurnpikeRateLimitSaturation"].get("expr").and_then(Node::as_str).unwrap_or_default(),
        &samples,
    );
    assert_eq!(
        saturation.values_of("outcome"),
        BTreeSet::from(["refused".to_string(), "store_error_refused".to_string()])
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The checker catches mistakes

fn problems(expr: &str) -> Vec<String> {
    check_expr(expr, &samples()).problems
}

#[test]
fn the_checker_accepts_correct_queries() {
    for expr in [
        r#"histogram_quantile(0.99, sum by (le, route) (rate(turnpike_http_request_duration_seconds_bucket[5m])))"#,
        r#"sum(rate(turnpike_http_requests_total{status_class=~"4xx|5xx", route=~"$route"}[$__rate_interval])) by (route)"#,
        r#"turnpike_build_info * on (instance) group_left (hash) turnpike_config_info"#,
        r#"label_values(turnpike_upstream_healthy_endpoints{instance=~"$instance"}, upstream)"#,
        r#"sum without (endpoint) (turnpike_upstream_connections_open) # a comment (with a paren"#,
    ] {
        assert_eq!(problems(expr), Vec::<String>::new(), "{expr}");
    }
}

#[test]
fn the_checker_rejects_each_kind_of_mistake() {
    for (expr, expected) in [
        // A misspelled metric, a family name instead of a sample name, a histogram without a suffix.
        ("sum(rate(turnpike_http_request_total[5m]))", "`turnpike_http_request_total` is not a sample name"),
        ("rate(turnpike_config_reloads[5m])", "`turnpike_config_reloads` is not a sample name"),
        ("turnpike_http_request_duration_seconds", "is not a sample name"),
        ("turnpike_config", "`turnpike_config` is not a sample name"),
        // A label the metric does not have, in a selector, a grouping or a join.
        (r#"turnpike_http_requests_total{status="500"}"#, "has no label `status`"),
        ("sum by (rout) (rate(turnpike_http_requests_total[5m]))", "groups by `rout`"),
        ("sum(rate(turnpike_upstream_attempts_total[5m])) by (route)", "groups by `route`"),
        ("sum by (le) (rate(turnpike_http_request_duration_seconds_count[5m]))", "groups by `le`"),
        ("turnpike_build_info * on (hash) turnpike_start_time_seconds", "`on(hash)`"),
        ("label_values(turnpike_upstream_healthy_endpoints, route)", "has no label `route`"),
        // A value outside a closed set.
        (r#"turnpike_http_requests_total{status_class="5XX"}"#, "`status_class` is never `5XX`"),
        (r#"turnpike_rate_limit_decisions_total{outcome=~"refused|rejected"}"#, "`outcome` is never `rejected`"),
        (r#"turnpike_http_errors_total{error_type="upstream_timeout"}"#, "`error_type` is never `upstream_timeout`"),
        (r#"turnpike_upstream_circuit_breaker_state{state="half-open"}"#, "`state` is never `half-open`"),
        // Broken syntax.
        ("sum(rate(turnpike_http_requests_total[5m])", "`(` but"),
    ] {
        let found = problems(expr);
        assert!(found.iter().any(|p| p.contains(expected)), "`{expr}` should be refused with `{expected}`: {found:?}");
    }
}

#[test]
fn templates_name_their_labels() {
    assert_eq!(template_labels("{{route}} {{ status_class }}", ""), ["route", "status_class"]);
    assert_eq!(template_labels("Route {{ $labels.route }}: {{ $value | humanize }}", "$labels."), ["route"]);
    assert!(is_duration("10m") && is_duration("1h30m") && is_duration("0s"));
    assert!(!is_duration("10") && !is_duration("ten minutes") && !is_duration(""));
}
