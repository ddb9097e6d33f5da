#!/usr/bin/env python3
"""Validates custom resources against their CustomResourceDefinition's openAPIV3Schema.

    validate_cr.py CRD.yaml FILE.yaml...            validate every document of the CRD's kind
    validate_cr.py --mutations CRD.yaml FILE.yaml...  also check that broken copies are rejected

kubernetes-validate checks built-in kinds only; this covers our own. The CRD's structural
schema is turned into a JSON Schema the way the API server reads it:

- defaults (`default:`) are applied before validation, as the API server does;
- `nullable: true` admits null;
- fields the schema does not declare are errors (kubectl's strict field validation), unless
  `x-kubernetes-preserve-unknown-fields` or `additionalProperties` allow them;
- `x-kubernetes-int-or-string` admits an integer or a string;
- `x-kubernetes-validations` (CEL) rules are evaluated where this script knows the rule
  (see CEL_RULES); an unknown rule is reported as not checked, never silently passed;
- `apiVersion`, `kind` and `metadata.name` (a DNS subdomain) are checked too.

With --mutations, each resource is also broken in several ways (an unknown mode, an unknown
field, a missing required field, a malformed duration, ...) and every broken copy must fail:
proof that the validation bites. Exit status 0 only when everything is as expected.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import re
import sys
from typing import Any, Callable

import jsonschema
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")


def parse_duration(text: str) -> float:
    """Seconds of a Go/CEL duration such as 5m or 1h30m (the subset the CRD's pattern allows)."""
    if not DURATION.match(text):
        raise ValueError(f"not a duration: {text!r}")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", text))


def is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


# The CEL rules of the HandlePolicy CRD, by their exact text, as Python predicates on `self`.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "self.all(c, isCIDR(c))": lambda s: all(isinstance(c, str) and is_cidr(c) for c in s),
    "has(self.stale) || has(self.orphaned) || has(self.renameGuard)": lambda s: any(
        k in s for k in ("stale", "orphaned", "renameGuard")
    ),
    "self.all(x, self.exists_one(y, y.endpoint == x.endpoint && y.share == x.share))": lambda s: all(
        sum(1 for y in s if (y.get("endpoint"), y.get("share")) == (x.get("endpoint"), x.get("share"))) == 1
        for x in s
    ),
    "duration(self.interval) >= duration('30s')": lambda s: parse_duration(s["interval"]) >= 30,
    "has(self.credentialsSecretRef) != has(self.identity)": lambda s: ("credentialsSecretRef" in s) != ("identity" in s),
    "(self.type == 'ServicePrincipal') == has(self.secretRef)": lambda s: (s.get("type") == "ServicePrincipal")
    == ("secretRef" in s),
    "!(self.type == 'ServicePrincipal' && has(self.clientId))": lambda s: not (
        s.get("type") == "ServicePrincipal" and "clientId" in s
    ),
}


def to_json_schema(node: Any) -> Any:
    """The JSON Schema equivalent of a structural schema node."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}] + out.get("anyOf", [])
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def apply_defaults(schema: dict, value: Any) -> Any:
    """Fills in `default`s of absent object properties, recursively, as the API server does."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in (schema.get("properties") or {}):
                    value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def cel_errors(schema: dict, value: Any, path: str, unknown: set[str]) -> list[str]:
    """Evaluates the x-kubernetes-validations this script knows, recursively."""
    errors = []
    if value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations") or []:
        check = CEL_RULES.get(rule["rule"])
        if check is None:
            unknown.add(rule["rule"])
            continue
        try:
            ok = check(value)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            where = path + rule.get("fieldPath", "")
            errors.append(f"{where or '.'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}", unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += cel_errors(schema["items"], v, f"{path}[{i}]", unknown)
    return errors


class CrdValidator:
    def __init__(self, crd: dict):
        if crd.get("kind") != "CustomResourceDefinition":
            raise SystemExit("the first file must be a CustomResourceDefinition")
        spec = crd["spec"]
        self.group = spec["group"]
        self.kind = spec["names"]["kind"]
        self.versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in spec["versions"] if v.get("served")}
        self.unknown_rules: set[str] = set()

    def handles(self, doc: dict) -> bool:
        return isinstance(doc, dict) and doc.get("kind") == self.kind

    def errors(self, doc: dict) -> list[str]:
        api_version = doc.get("apiVersion", "")
        group, _, version = api_version.rpartition("/")
        if group != self.group or version not in self.versions:
            return [f"apiVersion {api_version!r} is not served (group {self.group}, versions {sorted(self.versions)})"]
        errors = []
        name = (doc.get("metadata") or {}).get("name", "")
        if not (isinstance(name, str) and DNS_SUBDOMAIN.match(name) and len(name) <= 253):
            errors.append(f"metadata.name {name!r} is not a DNS subdomain")
        raw = self.versions[version]
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        body = apply_defaults(raw, copy.deepcopy(body))
        schema = to_json_schema(raw)
        # apiVersion, kind and metadata are the API server's; the schema need not declare them.
        schema.setdefault("properties", {})
        for k in ("apiVersion", "kind", "metadata"):
            schema["properties"].pop(k, None)
        validator = jsonschema.Draft7Validator(schema)
        for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = "." + ".".join(str(p) for p in e.absolute_path) if e.absolute_path else "."
            errors.append(f"{where}: {e.message}")
        errors += cel_errors(raw, body, "", self.unknown_rules)
        return errors


def mutations(doc: dict) -> list[tuple[str, dict]]:
    """Broken copies of a HandlePolicy, each of which the CRD must reject."""
    out = []

    def mutate(what: str, fn: Callable[[dict], None]):
        d = copy.deepcopy(doc)
        fn(d)
        out.append((what, d))

    def set_(path: list, value):
        def fn(d):
            node = d
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = value
        return fn

    def del_(path: list):
        def fn(d):
            node = d
            for p in path[:-1]:
                node = node[p]
            del node[path[-1]]
        return fn

    mutate("mode: Turbo", set_(["spec", "mode"], "Turbo"))
    mutate("an unknown spec field", set_(["spec", "sweepEverything"], True))
    mutate("no shares", del_(["spec", "shares"]))
    mutate("no mode", del_(["spec", "mode"]))
    mutate("interval: 5 minutes", set_(["spec", "interval"], "5 minutes"))
    mutate("interval: 10s (below 30s)", set_(["spec", "interval"], "10s"))
    mutate("a share name with an underscore", set_(["spec", "shares", 0, "share"], "Team_Files"))
    def no_credentials(d):
        d["spec"]["shares"][0].pop("credentialsSecretRef", None)
        d["spec"]["shares"][0].pop("identity", None)

    def both_credentials(d):
        d["spec"]["shares"][0]["credentialsSecretRef"] = {"name": "teamfiles-key"}
        d["spec"]["shares"][0]["identity"] = {"type": "Workload"}

    def identity(value: dict):
        def fn(d):
            d["spec"]["shares"][0].pop("credentialsSecretRef", None)
            d["spec"]["shares"][0]["identity"] = value
        return fn

    mutate("a share without credentials", no_credentials)
    mutate("a share with both a credentials Secret and an identity", both_credentials)
    mutate("identity type: Kerberos", identity({"type": "Kerberos"}))
    mutate("identity without a type", identity({"clientId": "11111111-2222-3333-4444-555555555555"}))
    mutate("a ServicePrincipal without secretRef", identity({"type": "ServicePrincipal"}))
    mutate("a Workload identity with a secretRef", identity({"type": "Workload", "secretRef": {"name": "sp"}}))
    mutate(
        "a ServicePrincipal with a clientId",
        identity({"type": "ServicePrincipal", "clientId": "11111111-2222-3333-4444-555555555555", "secretRef": {"name": "sp"}}),
    )
    mutate("a clientId that is not a GUID", identity({"type": "Managed", "clientId": "my-identity"}))
    mutate("an unknown identity field", identity({"type": "Workload", "tenant": "contoso"}))
    mutate("an endpoint that is not a URL", set_(["spec", "shares", 0, "endpoint"], "teamfiles.file.core.windows.net"))
    mutate("the same share twice", lambda d: d["spec"]["shares"].append(copy.deepcopy(d["spec"]["shares"][0])))
    mutate("no rule at all", set_(["spec", "rules"], {}))
    mutate("safetyValvePercent: 150", set_(["spec", "limits"], {"safetyValvePercent": 150}))
    mutate("a protected CIDR that is not one", set_(["spec", "protect"], {"clientCIDRs": ["10.0.0.300/24"]}))
    mutate("accessRights: [Execute]", lambda d: d["spec"]["rules"].update({"accessRights": ["Execute"]}))
    mutate("a stale rule without openLongerThan", lambda d: d["spec"]["rules"].update({"stale": {}}))
    mutate("metadata.name with capitals", set_(["metadata", "name"], "Team-Files"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutations", action="store_true", help="also check that broken copies are rejected")
    ap.add_argument("crd")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    with open(args.crd) as f:
        validator = CrdValidator(yaml.safe_load(f))
    passed = failed = 0
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        mine = [d for d in docs if validator.handles(d)]
        if not mine:
            print(f"FAIL {path}: no {validator.kind} in it")
            failed += 1
            continue
        for doc in mine:
            name = f"{path}: {validator.kind} {(doc.get('metadata') or {}).get('name')}"
            errors = validator.errors(doc)
            if errors:
                failed += 1
                print(f"FAIL {name}")
                for e in errors:
                    print(f"    {e}")
            else:
                passed += 1
                print(f"ok   {name}")
            if not args.mutations or errors:
                continue
            for what, broken in mutations(doc):
                errs = validator.errors(broken)
                if errs:
                    passed += 1
                    print(f"ok   {name} with {what}: rejected ({errs[0]})")
                else:
                    failed += 1
                    print(f"FAIL {name} with {what}: accepted")
    for rule in sorted(validator.unknown_rules):
        print(f"note: CEL rule not evaluated by this script: {rule}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
