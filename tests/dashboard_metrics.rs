//! The Grafana dashboard and the alert rules the chart ships use only metrics the program
//! exports, with only the labels those metrics have.
//!
//! Every PromQL expression of `charts/share-hygiene/files/dashboards/share-hygiene.json`
//! (panel targets and template variable queries) and of
//! `charts/share-hygiene/files/prometheusrules.yaml` is parsed by a small PromQL parser below,
//! which checks each metric name against `share_hygiene::metrics::CONTROLLER_METRICS` and
//! `SERVICE_METRICS` (plus Prometheus' own `up`), and each label matcher, `by`/`without`
//! clause and `on`/`ignoring` clause against the labels the expression's metrics carry. Scrape
//! labels (`job`, `instance`, `pod`, `namespace`) are allowed on every metric, `le` on histogram
//! buckets. It also checks the conventions the chart relies on: alert names, severities,
//! annotations, the job matcher the chart rewrites, and the dashboard's template variables.

#[path = "common_dashboard/mod.rs"]
mod common_dashboard;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use common_dashboard::{CHART, dashboard, dashboard_expressions, panels};
use serde::Deserialize;
use share_hygiene::metrics::{CONTROLLER_METRICS, MetricDef, SERVICE_METRICS};

/// Labels a scrape adds to every series (with the ServiceMonitor's honorLabels the metric's own
/// `namespace`, the HandlePolicy's, wins where it has one).
const SCRAPE_LABELS: &[&str] = &["job", "instance", "pod", "namespace"];

// ---------------------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------------------

fn catalog() -> impl Iterator<Item = &'static MetricDef> {
    CONTROLLER_METRICS.iter().chain(SERVICE_METRICS)
}

/// The labels a series of `name` may carry, or None when the program exports no such series.
fn labels_of(name: &str) -> Option<BTreeSet<String>> {
    let mut labels: BTreeSet<String> = SCRAPE_LABELS.iter().map(|s| s.to_string()).collect();
    if name == "up" {
        return Some(labels);
    }
    if let Some(d) = catalog().find(|d| d.name == name) {
        if d.kind == "histogram" {
            return None; // histograms are exported as _bucket, _sum and _count only
        }
        labels.extend(d.labels.iter().map(|s| s.to_string()));
        return Some(labels);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(d) = catalog().find(|d| d.name == base && d.kind == "histogram")
        {
            labels.extend(d.labels.iter().map(|s| s.to_string()));
            if suffix == "_bucket" {
                labels.insert("le".into());
            }
            return Some(labels);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// A small PromQL lexer and parser, enough for dashboards and alerts
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number,
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    /// `[5m]`, `[$__rate_interval]`, `[1h:5m]`: the contents are not checked.
    Range,
    Comma,
    Op(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Number => write!(f, "a number"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::LParen => write!(f, "`(`"),
            Tok::RParen => write!(f, "`)`"),
            Tok::LBrace => write!(f, "`{{`"),
            Tok::RBrace => write!(f, "`}}`"),
            Tok::Range => write!(f, "a range"),
            Tok::Comma => write!(f, "`,`"),
            Tok::Op(s) => write!(f, "`{s}`"),
        }
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '(' => (out.push(Tok::LParen), i += 1).1,
            ')' => (out.push(Tok::RParen), i += 1).1,
            '{' => (out.push(Tok::LBrace), i += 1).1,
            '}' => (out.push(Tok::RBrace), i += 1).1,
            ',' => (out.push(Tok::Comma), i += 1).1,
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or("unclosed `[`")?;
                out.push(Tok::Range);
                i += end + 1;
            }
            '"' | '\'' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unclosed string".into());
                    };
                    i += 1;
                    if c == quote {
                        break;
                    }
                    if c == '\\' && quote != '`' {
                        if let Some(&n) = chars.get(i) {
                            s.push(n);
                            i += 1;
                        }
                    } else {
                        s.push(c);
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                // Numbers, including durations such as 5m after `offset`.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Number);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if ["==", "!=", "<=", ">=", "=~", "!~"].contains(&two.as_str()) {
                    out.push(Tok::Op(two));
                    i += 2;
                } else if "+-*/%^<>=".contains(c) {
                    out.push(Tok::Op(c.to_string()));
                    i += 1;
                } else {
                    return Err(format!("unexpected character {c:?}"));
                }
            }
        }
    }
    Ok(out)
}

/// What an expression evaluates to, as far as labels go.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Scalar,
    Str,
    /// A vector whose series may carry these labels.
    Vector(BTreeSet<String>),
}

impl Ty {
    fn labels(&self) -> BTreeSet<String> {
        match self {
            Ty::Vector(l) => l.clone(),
            _ => BTreeSet::new(),
        }
    }
}

/// One vector selector: the metric and its matchers (label, operator, value).
#[derive(Debug, Clone)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String, String)>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const AGGREGATIONS_WITH_PARAM: &[&str] = &["topk", "bottomk", "quantile", "limitk", "limit_ratio"];
/// Functions whose result carries the labels of their (first) vector argument.
const LABEL_KEEPING_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "abs",
    "ceil",
    "floor",
    "round",
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "clamp",
    "clamp_min",
    "clamp_max",
    "sort",
    "sort_desc",
    "timestamp",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "predict_linear",
];

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    selectors: Vec<Selector>,
    problems: Vec<String>,
}

impl Parser {
    fn new(src: &str) -> Result<Self, String> {
        Ok(Self {
            toks: lex(src)?,
            pos: 0,
            selectors: Vec::new(),
            problems: Vec::new(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_ident(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.pos).cloned().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Tok) -> Result<(), String> {
        let got = self.next()?;
        if got == want {
            Ok(())
        } else {
            Err(format!("expected {want}, found {got}"))
        }
    }

    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    /// The whole input as one expression.
    fn parse(mut self) -> Result<(Ty, Vec<Selector>, Vec<String>), String> {
        let ty = self.expr(0)?;
        if let Some(t) = self.peek() {
            return Err(format!("unexpected {t} after the expression"));
        }
        Ok((ty, self.selectors, self.problems))
    }

    fn binary_op(&self) -> Option<(String, u8, bool)> {
        // (operator, precedence, right-associative)
        let op = match self.peek()? {
            Tok::Op(o) if o != "=" && o != "=~" && o != "!~" => o.clone(),
            Tok::Ident(k) if ["and", "or", "unless", "atan2"].contains(&k.as_str()) => k.clone(),
            _ => return None,
        };
        let prec = match op.as_str() {
            "or" => 1,
            "and" | "unless" => 2,
            "==" | "!=" | "<" | ">" | "<=" | ">=" => 3,
            "+" | "-" => 4,
            "*" | "/" | "%" | "atan2" => 5,
            "^" => 6,
            _ => return None,
        };
        Some((op, prec, prec == 6))
    }

    fn label_list(&mut self) -> Result<Vec<String>, String> {
        self.expect(Tok::LParen)?;
        let mut labels = Vec::new();
        loop {
            match self.next()? {
                Tok::RParen => return Ok(labels),
                Tok::Ident(l) => labels.push(l),
                Tok::Comma => {}
                t => return Err(format!("expected a label name, found {t}")),
            }
        }
    }

    fn expr(&mut self, min_prec: u8) -> Result<Ty, String> {
        let mut lhs = self.unary()?;
        while let Some((op, prec, right)) = self.binary_op() {
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            if self.peek_ident() == Some("bool") {
                self.pos += 1;
            }
            let mut on: Option<Vec<String>> = None;
            let mut ignoring: Option<Vec<String>> = None;
            let mut group: Option<(String, Vec<String>)> = None;
            if let Some(k) = self.peek_ident().map(str::to_owned)
                && (k == "on" || k == "ignoring")
            {
                self.pos += 1;
                let l = self.label_list()?;
                if k == "on" {
                    on = Some(l)
                } else {
                    ignoring = Some(l)
                }
            }
            if let Some(k) = self.peek_ident().map(str::to_owned)
                && (k == "group_left" || k == "group_right")
            {
                self.pos += 1;
                let l = if self.peek() == Some(&Tok::LParen) {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                group = Some((k, l));
            }
            let rhs = self.expr(if right { prec } else { prec + 1 })?;
            lhs = self.combine(&op, lhs, rhs, on, ignoring, group);
        }
        Ok(lhs)
    }

    fn combine(
        &mut self,
        op: &str,
        lhs: Ty,
        rhs: Ty,
        on: Option<Vec<String>>,
        ignoring: Option<Vec<String>>,
        group: Option<(String, Vec<String>)>,
    ) -> Ty {
        let (l, r) = (lhs.labels(), rhs.labels());
        if let Some(on) = &on {
            for label in on {
                if !l.contains(label) || !r.contains(label) {
                    self.problem(format!(
                        "`{op} on ({label})`: both sides must carry `{label}` (left {l:?}, right {r:?})"
                    ));
                }
            }
        }
        if let Some(ign) = &ignoring {
            for label in ign {
                if !l.contains(label) && !r.contains(label) {
                    self.problem(format!(
                        "`ignoring ({label})`: neither side carries `{label}`"
                    ));
                }
            }
        }
        match (&lhs, &rhs) {
            (Ty::Vector(_), Ty::Vector(_)) => match op {
                "or" => Ty::Vector(l.union(&r).cloned().collect()),
                "and" | "unless" => Ty::Vector(l),
                _ => match group {
                    Some((side, extra)) => {
                        let (mut keep, other) = if side == "group_left" { (l, r) } else { (r, l) };
                        for e in extra {
                            if !other.contains(&e) {
                                self.problem(format!(
                                    "`{side} ({e})`: the other side has no `{e}`"
                                ));
                            }
                            keep.insert(e);
                        }
                        Ty::Vector(keep)
                    }
                    None => Ty::Vector(l),
                },
            },
            (Ty::Vector(_), _) => Ty::Vector(l),
            (_, Ty::Vector(_)) => Ty::Vector(r),
            _ => Ty::Scalar,
        }
    }

    fn unary(&mut self) -> Result<Ty, String> {
        if matches!(self.peek(), Some(Tok::Op(o)) if o == "-" || o == "+") {
            self.pos += 1;
            return self.unary();
        }
        let ty = self.primary()?;
        // Postfix: a range or subquery, then an optional offset.
        if self.peek() == Some(&Tok::Range) {
            self.pos += 1;
        }
        if self.peek_ident() == Some("offset") {
            self.pos += 1;
            if matches!(self.peek(), Some(Tok::Op(o)) if o == "-") {
                self.pos += 1;
            }
            self.expect(Tok::Number)?;
        }
        Ok(ty)
    }

    fn primary(&mut self) -> Result<Ty, String> {
        match self.next()? {
            Tok::Number => Ok(Ty::Scalar),
            Tok::Str(_) => Ok(Ty::Str),
            Tok::LParen => {
                let t = self.expr(0)?;
                self.expect(Tok::RParen)?;
                Ok(t)
            }
            Tok::Ident(name) if AGGREGATIONS.contains(&name.as_str()) => self.aggregation(&name),
            Tok::Ident(name) if self.peek() == Some(&Tok::LParen) => self.call(&name),
            Tok::Ident(name) => self.selector(name),
            t => Err(format!("unexpected {t}")),
        }
    }

    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, String> {
        match self.peek_ident() {
            Some("by") => {
                self.pos += 1;
                Ok(Some((true, self.label_list()?)))
            }
            Some("without") => {
                self.pos += 1;
                Ok(Some((false, self.label_list()?)))
            }
            _ => Ok(None),
        }
    }

    fn aggregation(&mut self, name: &str) -> Result<Ty, String> {
        let before = self.grouping()?;
        self.expect(Tok::LParen)?;
        if AGGREGATIONS_WITH_PARAM.contains(&name) {
            self.expr(0)?;
            self.expect(Tok::Comma)?;
        }
        let body = self.expr(0)?;
        self.expect(Tok::RParen)?;
        let after = self.grouping()?;
        let inner = body.labels();
        if !matches!(body, Ty::Vector(_)) {
            self.problem(format!("`{name}` of something that is not a vector"));
        }
        Ok(match before.or(after) {
            Some((by, labels)) => {
                for l in &labels {
                    if !inner.contains(l) {
                        self.problem(format!(
                            "`{name} {} ({l})`: the aggregated series carry no `{l}` (they carry {inner:?})",
                            if by { "by" } else { "without" }
                        ));
                    }
                }
                if by {
                    Ty::Vector(labels.into_iter().collect())
                } else {
                    Ty::Vector(inner.into_iter().filter(|l| !labels.contains(l)).collect())
                }
            }
            None => Ty::Vector(BTreeSet::new()),
        })
    }

    fn call(&mut self, name: &str) -> Result<Ty, String> {
        self.expect(Tok::LParen)?;
        if name == "label_values" {
            // Grafana's variable query: label_values(selector, label).
            let v = self.expr(0)?;
            self.expect(Tok::Comma)?;
            let label = match self.next()? {
                Tok::Ident(l) => l,
                t => return Err(format!("label_values: expected a label, found {t}")),
            };
            self.expect(Tok::RParen)?;
            if !v.labels().contains(&label) {
                self.problem(format!(
                    "label_values(..., {label}): the series carry no `{label}`"
                ));
            }
            return Ok(Ty::Vector(BTreeSet::new()));
        }
        let mut args = Vec::new();
        if self.peek() != Some(&Tok::RParen) {
            loop {
                args.push(self.expr(0)?);
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(Tok::RParen)?;
        let first_vector = args.iter().find(|a| matches!(a, Ty::Vector(_))).cloned();
        match name {
            "time" | "pi" => Ok(Ty::Scalar),
            "scalar" => Ok(Ty::Scalar),
            "vector" | "absent" | "absent_over_time" => Ok(Ty::Vector(BTreeSet::new())),
            "histogram_quantile" => {
                let Some(Ty::Vector(mut l)) = first_vector else {
                    return Err("histogram_quantile needs a vector".into());
                };
                if !l.remove("le") {
                    self.problem(format!(
                        "histogram_quantile over series without `le` (they carry {l:?}); aggregate `by (le, ...)`"
                    ));
                }
                Ok(Ty::Vector(l))
            }
            f if LABEL_KEEPING_FUNCTIONS.contains(&f) => {
                first_vector.ok_or_else(|| format!("{f} needs a vector argument"))
            }
            f => Err(format!("function `{f}` is not known to this test's parser")),
        }
    }

    fn selector(&mut self, metric: String) -> Result<Ty, String> {
        const KEYWORDS: &[&str] = &[
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
            "bool",
            "offset",
            "and",
            "or",
            "unless",
        ];
        if KEYWORDS.contains(&metric.as_str()) {
            return Err(format!("unexpected keyword `{metric}`"));
        }
        let mut matchers = Vec::new();
        if self.peek() == Some(&Tok::LBrace) {
            self.pos += 1;
            loop {
                match self.next()? {
                    Tok::RBrace => break,
                    Tok::Comma => {}
                    Tok::Ident(label) => {
                        let op = match self.next()? {
                            Tok::Op(o) if ["=", "!=", "=~", "!~"].contains(&o.as_str()) => o,
                            t => return Err(format!("expected a matcher operator, found {t}")),
                        };
                        let value = match self.next()? {
                            Tok::Str(s) => s,
                            t => return Err(format!("expected a string, found {t}")),
                        };
                        matchers.push((label, op, value));
                    }
                    t => return Err(format!("expected a label matcher, found {t}")),
                }
            }
        }
        let labels = match labels_of(&metric) {
            Some(l) => l,
            None => {
                self.problem(format!(
                    "metric `{metric}` is not in CONTROLLER_METRICS or SERVICE_METRICS"
                ));
                BTreeSet::new()
            }
        };
        for (label, _, _) in &matchers {
            if !labels.is_empty() && !labels.contains(label) {
                self.problem(format!(
                    "`{metric}{{{label}...}}`: `{metric}` has no label `{label}` (it has {labels:?})"
                ));
            }
        }
        self.selectors.push(Selector { metric, matchers });
        Ok(Ty::Vector(labels))
    }
}

/// Parses and checks one expression; returns the selectors, or the problems found.
fn check(expr: &str) -> Result<Vec<Selector>, Vec<String>> {
    let parser = Parser::new(expr).map_err(|e| vec![format!("cannot lex: {e}")])?;
    match parser.parse() {
        Ok((_, selectors, problems)) if problems.is_empty() => Ok(selectors),
        Ok((_, _, problems)) => Err(problems),
        Err(e) => Err(vec![format!("cannot parse: {e}")]),
    }
}

// ---------------------------------------------------------------------------------------------
// The parser itself
// ---------------------------------------------------------------------------------------------

#[test]
fn parser_accepts_catalog_metrics_and_their_labels() {
    let ok = [
        r#"sum by (namespace, policy) (increase(share_hygiene_sweeps_total{job="x", result="ShareError"}[30m])) > 0"#,
        r#"histogram_quantile(0.99, sum by (le, operation) (rate(share_hygiene_backend_request_duration_seconds_bucket[5m])))"#,
        r#"max by (share) (share_hygiene_max_handles_per_path and on (instance) (share_hygiene_leader == 1)) > 1600"#,
        r#"time() - max by (namespace, policy) (share_hygiene_last_successful_sweep_timestamp_seconds) > 3 * max by (namespace, policy) (share_hygiene_sweep_interval_seconds)"#,
        r#"absent(up{job="share-hygiene"} == 1)"#,
        r#"count(up == 1) > 0 and on () sum(share_hygiene_leader) == 0"#,
        r#"label_values(share_hygiene_sweep_interval_seconds{namespace=~"$namespace"}, policy)"#,
        r#"sum without (instance, pod) (rate(share_hygiene_service_requests_total[$__rate_interval]))"#,
        r#"share_hygiene_handles_observed / ignoring (classification) group_left sum without (classification) (share_hygiene_handles_observed)"#,
    ];
    for e in ok {
        if let Err(p) = check(e) {
            panic!("{e}\n  should pass, but: {p:?}");
        }
    }
}

#[test]
fn parser_rejects_unknown_metrics_and_labels() {
    let bad = [
        // not in the catalog
        "rate(share_hygiene_handles_closed[5m])",
        "share_hygiene_sweep_duration_seconds",
        // labels the metric does not have
        r#"share_hygiene_leader{policy="a"}"#,
        "sum by (share) (share_hygiene_sweeps_total)",
        "sum by (policy) (share_hygiene_backend_requests_total)",
        // le only on buckets
        "histogram_quantile(0.5, sum by (operation) (rate(share_hygiene_backend_request_duration_seconds_bucket[5m])))",
        r#"share_hygiene_backend_request_duration_seconds_count{le="1"}"#,
        // a join on a label one side lacks
        "share_hygiene_share_up and on (share) share_hygiene_leader",
        // labels lost by an earlier aggregation
        "sum by (policy) (sum by (namespace) (share_hygiene_sweeps_total))",
        // a Grafana variable over a missing label
        "label_values(share_hygiene_leader, policy)",
    ];
    for e in bad {
        assert!(check(e).is_err(), "{e} should be rejected");
    }
}

// ---------------------------------------------------------------------------------------------
// The alert rules
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for", default)]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn rule_file() -> RuleFile {
    let path = format!("{CHART}/files/prometheusrules.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn alerts() -> Vec<Rule> {
    rule_file()
        .groups
        .into_iter()
        .flat_map(|g| g.rules)
        .collect()
}

#[test]
fn alert_expressions_use_only_catalog_metrics_and_labels() {
    let mut problems = Vec::new();
    let rules = alerts();
    assert!(!rules.is_empty(), "no rules in the rule file");
    for rule in &rules {
        let name = rule
            .alert
            .as_deref()
            .or(rule.record.as_deref())
            .unwrap_or("?");
        match check(&rule.expr) {
            Ok(selectors) => {
                // The chart swaps `job="share-hygiene"` for metrics.prometheusRules.jobSelector, so
                // every selector must carry exactly that matcher.
                for s in selectors {
                    let has_job = s
                        .matchers
                        .iter()
                        .any(|(l, op, v)| l == "job" && op == "=" && v == "share-hygiene");
                    if !has_job {
                        problems.push(format!(
                            "{name}: `{}` has no job=\"share-hygiene\" matcher (the chart rewrites that one)",
                            s.metric
                        ));
                    }
                }
            }
            Err(p) => problems.extend(p.into_iter().map(|p| format!("{name}: {p}"))),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn alerts_follow_the_conventions() {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for group in rule_file().groups {
        assert!(!group.name.is_empty());
        let _ = group.interval;
        for rule in group.rules {
            let Some(name) = rule.alert.clone() else {
                problems.push(format!(
                    "recording rule {:?} in the alert file",
                    rule.record
                ));
                continue;
            };
            let camel = name.starts_with("ShareHygiene")
                && name.len() > "ShareHygiene".len()
                && name.chars().all(|c| c.is_ascii_alphanumeric());
            if !camel {
                problems.push(format!(
                    "{name}: alert names are CamelCase and start with ShareHygiene"
                ));
            }
            if !names.insert(name.clone()) {
                problems.push(format!("{name}: defined twice"));
            }
            match rule.labels.get("severity").map(String::as_str) {
                Some("critical" | "warning" | "info") => {}
                other => problems.push(format!(
                    "{name}: severity {other:?} is not critical, warning or info"
                )),
            }
            match rule.annotations.get("summary") {
                Some(s) if s.ends_with('.') && !s.contains("{{") => {}
                other => problems.push(format!(
                    "{name}: summary {other:?} must be static and end with a period"
                )),
            }
            match rule.annotations.get("description") {
                Some(d) if d.contains("{{") => {}
                other => problems.push(format!("{name}: description {other:?} must be templated")),
            }
            if let Some(f) = &rule.for_ {
                let ok = !f.is_empty()
                    && f.trim_end_matches(|c: char| c.is_ascii_alphabetic())
                        .chars()
                        .all(|c| c.is_ascii_digit());
                if !ok {
                    problems.push(format!("{name}: for {f:?} is not a duration"));
                }
            }
            let _ = rule.keep_firing_for;
        }
    }
    // The alerts the brief asks for, so none is dropped by accident.
    for want in [
        "ShareHygieneControllerDown",
        "ShareHygieneNoLeader",
        "ShareHygieneSweepStale",
        "ShareHygieneSweepErrors",
        "ShareHygieneReconcileErrors",
        "ShareHygieneCloseFailures",
        "ShareHygieneSafetyValveTripped",
        "ShareHygieneHandleLimitNear",
        "ShareHygieneBackendThrottled",
    ] {
        if !names.contains(want) {
            problems.push(format!("{want}: missing"));
        }
    }
    // Every alert is documented.
    let docs_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/observability.md");
    let docs = std::fs::read_to_string(docs_path).unwrap_or_default();
    for name in &names {
        if !docs.contains(name.as_str()) {
            problems.push(format!("{name}: not listed in docs/observability.md"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------------------------

#[test]
fn dashboard_expressions_use_only_catalog_metrics_and_labels() {
    let dash = dashboard();
    let exprs = dashboard_expressions(&dash);
    assert!(exprs.len() > 10, "only {} expressions found", exprs.len());
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &exprs {
        match check(expr) {
            Ok(selectors) => {
                for s in selectors {
                    let has = |label: &str, value: &str| {
                        s.matchers
                            .iter()
                            .any(|(l, op, v)| l == label && op == "=~" && v == value)
                    };
                    let def = catalog().find(|d| {
                        s.metric == d.name
                            || ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|suf| s.metric.strip_suffix(suf) == Some(d.name))
                    });
                    if let Some(d) = def {
                        used.insert(d.name);
                    }
                    let is_controller = CONTROLLER_METRICS.iter().any(|c| Some(c) == def)
                        && !SERVICE_METRICS.iter().any(|c| Some(c) == def);
                    // Controller series are selected by the $job variable, policy series also by
                    // the $namespace and $policy variables.
                    if (is_controller || s.metric == "up") && !has("job", "$job") {
                        problems.push(format!("{place}: `{}` lacks job=~\"$job\"", s.metric));
                    }
                    let policy_metric = def.is_some_and(|d| d.labels.contains(&"policy"));
                    if policy_metric
                        && !place.starts_with("variable")
                        && !(has("namespace", "$namespace") && has("policy", "$policy"))
                    {
                        problems.push(format!(
                            "{place}: `{}` lacks namespace=~\"$namespace\", policy=~\"$policy\"",
                            s.metric
                        ));
                    }
                }
            }
            Err(p) => problems.extend(p.into_iter().map(|p| format!("{place}: {p}\n    {expr}"))),
        }
    }
    // What the dashboard is for.
    for want in [
        "share_hygiene_handles_observed",
        "share_hygiene_handles_closed_total",
        "share_hygiene_handles_close_failed_total",
        "share_hygiene_handles_not_closed",
        "share_hygiene_oldest_handle_age_seconds",
        "share_hygiene_max_handles_per_path",
        "share_hygiene_sweep_duration_seconds",
        "share_hygiene_backend_request_duration_seconds",
        "share_hygiene_backend_requests_total",
        "share_hygiene_leader",
        "share_hygiene_reconcile_errors_total",
        "share_hygiene_last_successful_sweep_timestamp_seconds",
    ] {
        if !used.contains(want) {
            problems.push(format!("no panel shows {want}"));
        }
    }
    let dry_run = exprs.iter().any(|(_, e)| {
        e.contains("share_hygiene_handles_not_closed") && e.contains(r#"cause="DryRun""#)
    });
    if !dry_run {
        problems.push("no panel shows would-close handles (not_closed{cause=\"DryRun\"})".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboard_has_its_variables_and_uses_the_datasource_variable() {
    let dash = dashboard();
    let vars: BTreeMap<String, &serde_json::Value> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v))
        .collect();
    let ds = vars.get("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["namespace", "policy"] {
        let v = vars
            .get(name)
            .unwrap_or_else(|| panic!("a {name} variable"));
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(v["multi"], true, "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
    }
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        if !ids.insert(p["id"].as_i64().expect("panel id")) {
            problems.push(format!("panel {title:?}: duplicate id {}", p["id"]));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!(
                "panel {title:?}: datasource is not ${{datasource}}"
            ));
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            if t["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "panel {title:?}: a target's datasource is not ${{datasource}}"
                ));
            }
        }
        if p["description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("panel {title:?}: no description"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Regression (was a bug): the collapsed "Handle services" row held no panels, though the docs
/// listed four. A collapsed row keeps its panels in its own `panels`; an expanded one is
/// followed by its panels.
#[test]
fn every_row_has_panels() {
    let dash = dashboard();
    let top = dash["panels"].as_array().expect("panels");
    let mut empty = Vec::new();
    for (i, p) in top.iter().enumerate() {
        if p["type"] != "row" {
            continue;
        }
        let nested = p["panels"].as_array().map_or(0, Vec::len);
        let following = top[i + 1..]
            .iter()
            .take_while(|q| q["type"] != "row")
            .count();
        let held = if p["collapsed"] == true {
            nested
        } else {
            following
        };
        if held == 0 {
            empty.push(p["title"].as_str().unwrap_or("?"));
        }
    }
    assert!(empty.is_empty(), "rows without panels: {empty:?}");
}

#[test]
fn docs_list_every_metric() {
    let docs_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/observability.md");
    let docs = std::fs::read_to_string(docs_path).unwrap_or_else(|e| panic!("{docs_path}: {e}"));
    let missing: Vec<&str> = catalog()
        .map(|d| d.name)
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/observability.md does not list: {missing:?}"
    );
}
