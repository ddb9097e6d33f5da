#!/usr/bin/env bash
# Checks the alerts and the dashboard the chart ships:
#   - promtool check rules on charts/share-hygiene/files/prometheusrules.yaml;
#   - promtool test rules on tests/promtool/*.yaml (every alert fires when it should and stays
#     silent when it should not);
#   - the PrometheusRule the chart renders (defaults, and with overrides and a custom job
#     selector) is a valid rule file, with the overrides applied;
#   - every PromQL expression of the dashboard parses (promtool, Grafana variables filled in);
#   - the Rust test tests/dashboard_metrics.rs: every metric and label the dashboard and the
#     alerts use exists in share_hygiene::metrics.
#
# Usage: scripts/check-observability.sh
# Needs: promtool (Debian's prometheus package, scripts/setup.sh installs it), helm
# (scripts/setup-helm.sh), the venv (scripts/setup.sh) and cargo.
set -uo pipefail
cd "$(dirname "$0")/.."

chart=charts/share-hygiene
rules=$chart/files/prometheusrules.yaml
dashboard=$chart/files/dashboards/share-hygiene.json
py=.venv/bin/python

command -v promtool >/dev/null || {
  echo "check-observability: promtool not found; install Debian's prometheus package (scripts/setup.sh does)" >&2
  exit 1
}
helm=$(scripts/setup-helm.sh) || { echo "check-observability: cannot install helm" >&2; exit 1; }
"$py" -c 'import yaml' 2>/dev/null || { echo "check-observability: no venv with PyYAML; run scripts/setup.sh" >&2; exit 1; }

. scripts/lib/checks.sh

# The spec of the one PrometheusRule in a render (stdin), as a rule file (stdout).
extract_rules() {
  "$py" -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "PrometheusRule"]
assert len(docs) == 1, f"{len(docs)} PrometheusRules in the render"
yaml.safe_dump(docs[0]["spec"], sys.stdout, sort_keys=False)
'
}

# Two YAML files hold the same data.
same_yaml() {
  "$py" -c '
import sys, yaml
a, b = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a == b else f"{sys.argv[1]} and {sys.argv[2]} differ")
' "$1" "$2"
}

rendered_rules_default() {
  "$helm" template share-hygiene "$chart" --set metrics.prometheusRules.enabled=true | extract_rules >"$work/default-rules.yaml" &&
    promtool check rules "$work/default-rules.yaml" &&
    same_yaml "$rules" "$work/default-rules.yaml"
}

rendered_rules_overridden() {
  "$helm" template share-hygiene "$chart" -f "$chart/ci/all-features-values.yaml" | extract_rules >"$work/full-rules.yaml" &&
    promtool check rules "$work/full-rules.yaml" &&
    "$py" - "$work/full-rules.yaml" <<'EOF'
import sys, yaml
rules = {r["alert"]: r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]}
assert "ShareHygieneBackendThrottled" not in rules, "a disabled alert is still there"
near = rules["ShareHygieneHandleLimitNear"]
assert near["for"] == "30m" and near["labels"]["severity"] == "critical", near
assert near["annotations"]["runbook_url"].startswith("https://"), near
assert near["annotations"]["summary"].endswith("."), "an override replaced the summary"
assert near["expr"].rstrip().endswith("> 1600"), near["expr"]
assert rules["ShareHygieneSweepStale"]["expr"].rstrip().endswith("> 3600"), "expr override not applied"
for name, r in rules.items():
    assert r["labels"].get("team") == "storage", f"{name}: ruleLabels not applied"
    assert 'job="share-hygiene"' not in r["expr"], f"{name}: job matcher not rewritten"
    assert 'job=~"share-hygiene|storage-hygiene"' in r["expr"], f"{name}: no custom job matcher"
print(len(rules), "alerts checked")
EOF
}

# Every PromQL expression of the dashboard, Grafana variables filled in, as recording rules
# that promtool parses.
dashboard_parses() {
  "$py" - "$dashboard" >"$work/dashboard-rules.yaml" <<'EOF' && promtool check rules "$work/dashboard-rules.yaml"
import json, sys, yaml
dash = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            if t.get("expr"):
                exprs.append(t["expr"])
        walk(p.get("panels", []))
walk(dash["panels"])
for v in dash["templating"]["list"]:
    if v.get("type") == "query":
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        # label_values(SELECTOR, label) is Grafana's; its selector is PromQL.
        exprs.append(q[len("label_values("):q.rindex(",")])
fill = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h",
        "$job": "share-hygiene", "$namespace": ".*", "$policy": ".*"}
rules = []
for i, e in enumerate(exprs):
    for k, v in fill.items():
        e = e.replace(k, v)
    assert "$" not in e, f"unfilled variable in {e}"
    rules.append({"record": f"dashboard:expr_{i}", "expr": e})
assert len(rules) > 10, f"only {len(rules)} expressions"
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sys.stdout)
EOF
}

run "promtool check rules $rules" promtool check rules "$rules"
run "promtool test rules tests/promtool/*.yaml" promtool test rules tests/promtool/*.yaml
run "chart PrometheusRule (defaults) passes promtool and equals the rules file" rendered_rules_default
run "chart PrometheusRule (overrides, job selector) passes promtool, overrides applied" rendered_rules_overridden
run "dashboard: every PromQL expression parses (promtool)" dashboard_parses

run "cargo test --test dashboard_metrics (catalog metrics and labels only)" \
  cargo test --quiet --locked --test dashboard_metrics

summary
