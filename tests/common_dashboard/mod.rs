//! The Grafana dashboard the chart ships, read as Grafana reads it: its panels (rows' nested
//! panels included), their query targets, and its query variables. Shared by the static
//! checks (`dashboard_metrics`) and the live-Prometheus test (`prometheus_live`).
#![allow(dead_code)]

/// The chart's directory.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/share-hygiene");

/// The dashboard JSON.
pub fn dashboard() -> serde_json::Value {
    let path = format!("{CHART}/files/dashboards/share-hygiene.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every panel, rows' nested panels included.
pub fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(children) = p.get("panels") {
                walk(children, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// One PromQL query of a panel.
#[derive(Debug, Clone)]
pub struct Target {
    /// The panel's id.
    pub panel_id: i64,
    /// The panel's title.
    pub title: String,
    /// The panel's type (`stat`, `timeseries`, ...).
    pub kind: String,
    /// The target's `refId` (`A`, `B`, ...).
    pub ref_id: String,
    /// The expression, Grafana variables unfilled.
    pub expr: String,
}

/// Every panel target with an expression, in dashboard order.
pub fn targets(dash: &serde_json::Value) -> Vec<Target> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(Target {
                    panel_id: p["id"].as_i64().unwrap_or_default(),
                    title: p["title"].as_str().unwrap_or("?").to_owned(),
                    kind: p["type"].as_str().unwrap_or("?").to_owned(),
                    ref_id: t["refId"].as_str().unwrap_or("?").to_owned(),
                    expr: e.to_owned(),
                });
            }
        }
    }
    out
}

/// (name, query) of every query variable, e.g. `label_values(metric{...}, label)`.
pub fn variable_queries(dash: &serde_json::Value) -> Vec<(String, String)> {
    let vars = dash["templating"]["list"].as_array().into_iter().flatten();
    vars.filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            let name = v["name"].as_str().unwrap_or("?");
            (name.to_owned(), q.unwrap_or_default().to_owned())
        })
        .collect()
}

/// (where, expression) for every panel target and every query variable.
pub fn dashboard_expressions(dash: &serde_json::Value) -> Vec<(String, String)> {
    let panel_exprs = targets(dash).into_iter().map(|t| {
        let place = format!("panel {:?} target \"{}\"", t.title, t.ref_id);
        (place, t.expr)
    });
    let vars = variable_queries(dash).into_iter();
    panel_exprs
        .chain(vars.map(|(name, q)| (format!("variable \"{name}\""), q)))
        .collect()
}
