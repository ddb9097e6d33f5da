#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests for what schema validation cannot see.

    check_manifests.py rbac [--serviceaccount NS/NAME ...] FILE...
                                                     no `*` in any (Cluster)Role rule, and the
                                                     ServiceAccount holds exactly what it needs
    check_manifests.py pss --level restricted FILE...  every pod spec meets the Pod Security
                                                     Standard (restricted or baseline)
    check_manifests.py controller [--replicas N] FILE  the controller Deployment's contract
    check_manifests.py dashboards CHART_DIR FILE     dashboard ConfigMaps hold files/dashboards/*.json

Each prints one line per finding and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import yaml


def documents(paths: list[str]) -> Iterator[tuple[str, dict]]:
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind"):
                    yield path, doc


def ident(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc['kind']} {ns}{meta.get('name')}"


# --------------------------------------------------------------------------------------- RBAC

# What the controller does with the API (see the chart's rbac.yaml), as (group, resource, verbs).
POLICY_PERMISSIONS = [
    ("sharehygiene.io", "handlepolicies", {"get", "list", "watch"}),
    ("sharehygiene.io", "handlepolicies/status", {"get", "patch", "update"}),
    ("", "secrets", {"get", "list", "watch"}),
    ("events.k8s.io", "events", {"create", "patch"}),
]
CLUSTER_PERMISSIONS = [
    ("", "nodes", {"list", "watch"}),
    ("", "pods", {"list", "watch"}),
]


def rbac_grants(paths: list[str], subject: tuple[str, str]) -> set[tuple]:
    """(scope, group, resource, verb, resourceName) the ServiceAccount `subject` holds;
    scope "*" is cluster-wide, resourceName "*" any name."""
    roles = {}
    bindings = []
    for _, doc in documents(paths):
        meta = doc.get("metadata") or {}
        if doc["kind"] == "ClusterRole":
            roles[("ClusterRole", None, meta["name"])] = doc
        elif doc["kind"] == "Role":
            roles[("Role", meta.get("namespace"), meta["name"])] = doc
        elif doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            bindings.append(doc)
    grants = set()
    for b in bindings:
        if not any(
            s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == subject
            for s in b.get("subjects") or []
        ):
            continue
        ns = (b.get("metadata") or {}).get("namespace")
        ref = b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            continue
        scope = "*" if b["kind"] == "ClusterRoleBinding" else ns
        for rule in role.get("rules") or []:
            for g in rule.get("apiGroups") or []:
                for r in rule.get("resources") or []:
                    for v in rule.get("verbs") or []:
                        for n in rule.get("resourceNames") or ["*"]:
                            grants.add((scope, g, r, v, n))
    return grants


def check_rbac(paths: list[str], subject: tuple[str, str] | None, watch: list[str], lease: str | None) -> list[str]:
    problems = []
    roles = 0
    for _, doc in documents(paths):
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        roles += 1
        if doc.get("aggregationRule"):
            problems.append(f"{ident(doc)}: aggregationRule grants whatever matching roles grant")
        for i, rule in enumerate(doc.get("rules") or []):
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                for value in rule.get(field) or []:
                    if "*" in value:
                        problems.append(f"{ident(doc)}: rules[{i}].{field} has wildcard {value!r}")
            if "nonResourceURLs" in rule:
                problems.append(f"{ident(doc)}: rules[{i}] grants nonResourceURLs")
    if roles == 0:
        problems.append("no Role or ClusterRole found")
    if subject is None:
        return problems

    # Exactly what the controller needs: nothing missing, nothing more.
    release_ns = subject[0]
    need = set()
    for g, r, verbs in CLUSTER_PERMISSIONS:
        need |= {("*", g, r, v, "*") for v in verbs}
    for scope in watch or ["*"]:
        for g, r, verbs in POLICY_PERMISSIONS:
            need |= {(scope, g, r, v, "*") for v in verbs}
    if lease:
        need |= {(release_ns, "coordination.k8s.io", "leases", v, "*") for v in ("create", "list", "watch")}
        need |= {(release_ns, "coordination.k8s.io", "leases", v, lease) for v in ("get", "update", "patch")}
    have = rbac_grants(paths, subject)

    def covered(n):
        scope, g, r, v, name = n
        return any(
            hs in ("*", scope) and hg == g and hr == r and hv == v and hn in ("*", name)
            for hs, hg, hr, hv, hn in have
        )

    for n in sorted(need):
        if not covered(n):
            problems.append(f"missing: {fmt_grant(n)}")
    for h in sorted(have - need):
        problems.append(f"more than needed: {fmt_grant(h)}")
    return problems


def fmt_grant(g: tuple) -> str:
    scope, group, resource, verb, name = g
    where = "cluster-wide" if scope == "*" else f"in {scope}"
    named = "" if name == "*" else f" named {name}"
    return f"{verb} {resource}{'.' + group if group else ''}{named} {where}"


# ---------------------------------------------------------------------------------------- PSS

# https://kubernetes.io/docs/concepts/security/pod-security-standards/
BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "CronJob"}


def pod_spec(doc: dict) -> dict | None:
    kind = doc["kind"]
    if kind == "Pod":
        return doc.get("spec") or {}
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def check_pod(name: str, spec: dict, level: str) -> list[str]:
    p = []
    psc = spec.get("securityContext") or {}
    containers = [
        (f"{kind}[{c.get('name')}]", c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(kind) or []
    ]
    if not containers:
        p.append(f"{name}: no containers")

    # ---- baseline
    for field in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if field == "hostUsers":
            continue  # hostUsers: false is *more* isolated; true/unset is allowed
        if spec.get(field):
            p.append(f"{name}: {field} is true")
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            p.append(f"{name}: volume {v.get('name')} is a hostPath")
        if level == "restricted":
            kinds = set(v) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                p.append(f"{name}: volume {v.get('name')} is of type {sorted(kinds)}")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            p.append(f"{name}: unsafe sysctl {s.get('name')}")

    def baseline_sc(where: str, sc: dict):
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            p.append(f"{where}: windowsOptions.hostProcess is true")
        se = sc.get("seLinuxOptions") or {}
        if se.get("user") or se.get("role"):
            p.append(f"{where}: seLinuxOptions sets user or role")
        if se.get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
            p.append(f"{where}: seLinuxOptions.type {se.get('type')!r}")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            p.append(f"{where}: seccompProfile is Unconfined")
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor == "Unconfined":
            p.append(f"{where}: appArmorProfile is Unconfined")

    baseline_sc(f"{name} pod", psc)
    for where, c in containers:
        where = f"{name} {where}"
        sc = c.get("securityContext") or {}
        baseline_sc(where, sc)
        if sc.get("privileged"):
            p.append(f"{where}: privileged")
        if sc.get("procMount") not in (None, "Default"):
            p.append(f"{where}: procMount {sc.get('procMount')}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                p.append(f"{where}: hostPort {port['hostPort']}")
        caps = sc.get("capabilities") or {}
        added = set(caps.get("add") or [])
        if level == "baseline":
            if not added <= BASELINE_CAPS:
                p.append(f"{where}: adds capabilities {sorted(added - BASELINE_CAPS)}")
            continue

        # ---- restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in (caps.get("drop") or []):
            p.append(f"{where}: capabilities.drop lacks ALL")
        if not added <= {"NET_BIND_SERVICE"}:
            p.append(f"{where}: adds capabilities {sorted(added)}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            p.append(f"{where}: runAsNonRoot is not true (container or pod)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            p.append(f"{where}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            p.append(f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault or Localhost")
    return p


def check_pss(paths: list[str], level: str) -> list[str]:
    problems = []
    pods = 0
    for _, doc in documents(paths):
        spec = pod_spec(doc)
        if spec is None:
            continue
        pods += 1
        problems += check_pod(ident(doc), spec, level)
    if pods == 0:
        problems.append("no pod spec found")
    return problems


# ---------------------------------------------------------------------------------- controller

def check_controller(paths: list[str], replicas: int | None) -> list[str]:
    p = []
    deployments = [d for _, d in documents(paths) if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        return [f"expected one Deployment, found {len(deployments)}"]
    d = deployments[0]
    name = ident(d)
    spec = d["spec"]["template"]["spec"]
    if replicas is not None and d["spec"].get("replicas") != replicas:
        p.append(f"{name}: replicas {d['spec'].get('replicas')}, expected {replicas}")
    c = next((c for c in spec["containers"] if c["name"] == "controller"), None)
    if c is None:
        return p + [f"{name}: no container named controller"]
    args = c.get("args") or []
    if not args or args[0] != "controller":
        p.append(f"{name}: args do not start with the controller subcommand: {args}")
    if not any(a.startswith("--listen=") for a in args):
        p.append(f"{name}: no --listen")
    leader = [a for a in args if a.startswith("--lease-name=")]
    if (d["spec"].get("replicas") or 1) > 1 and not leader:
        p.append(f"{name}: more than one replica without --lease-name (leader election)")
    if leader and "--no-leader-election" in args:
        p.append(f"{name}: both --lease-name and --no-leader-election")
    env = {e["name"]: e for e in c.get("env") or []}
    for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        got = ((env.get(var) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        if got != field:
            p.append(f"{name}: env {var} is not the downward API's {field}")
    ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports") or []}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = (c.get(probe) or {}).get("httpGet") or {}
        if http.get("path") != path:
            p.append(f"{name}: {probe} is not an HTTP GET of {path}")
        port = http.get("port")
        if port not in ports and port not in ports.values():
            p.append(f"{name}: {probe} port {port!r} is not a container port")
    res = c.get("resources") or {}
    if not (res.get("requests") or {}).get("cpu") or not (res.get("requests") or {}).get("memory"):
        p.append(f"{name}: no cpu and memory requests")
    if not (res.get("limits") or {}).get("memory"):
        p.append(f"{name}: no memory limit")
    if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
        p.append(f"{name}: readOnlyRootFilesystem is not true")
    if spec.get("hostNetwork"):
        p.append(f"{name}: hostNetwork")
    # The Service selects exactly these pods and exposes the metrics port.
    services = [s for _, s in documents(paths) if s["kind"] == "Service"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    if not any(
        s["spec"].get("selector")
        and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        and any(pt.get("targetPort") in ports or pt.get("targetPort") in ports.values() for pt in s["spec"]["ports"])
        for s in services
    ):
        p.append(f"{name}: no Service selects the controller pods on their metrics port")
    # A ServiceMonitor, when there is one, scrapes that Service's metrics port and names the job
    # from a label the Service has (the alerts select job="<that label's value>").
    for _, sm in documents(paths):
        if sm["kind"] != "ServiceMonitor":
            continue
        smname = ident(sm)
        want = sm["spec"]["selector"].get("matchLabels") or {}
        matched = [s for s in services if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in want.items())]
        if len(matched) != 1:
            p.append(f"{smname}: selects {len(matched)} Services, expected the metrics Service")
            continue
        svc = matched[0]
        if svc["metadata"].get("namespace") not in (sm["spec"].get("namespaceSelector") or {}).get("matchNames", []):
            p.append(f"{smname}: namespaceSelector does not include {svc['metadata'].get('namespace')}")
        port_names = {pt.get("name") for pt in svc["spec"]["ports"]}
        for ep in sm["spec"].get("endpoints") or []:
            if ep.get("port") not in port_names:
                p.append(f"{smname}: endpoint port {ep.get('port')!r} is not a port of {ident(svc)}")
            if ep.get("path", "/metrics") != "/metrics":
                p.append(f"{smname}: endpoint path {ep.get('path')!r}")
        job_label = sm["spec"].get("jobLabel")
        if job_label and job_label not in (svc["metadata"].get("labels") or {}):
            p.append(f"{smname}: jobLabel {job_label!r} is not a label of {ident(svc)}")
    return p


# ---------------------------------------------------------------------------------- dashboards

def check_dashboards(chart: str, paths: list[str]) -> list[str]:
    p = []
    files = {f.name: json.loads(f.read_text()) for f in sorted(Path(chart, "files", "dashboards").glob("*.json"))}
    if not files:
        return [f"no dashboards in {chart}/files/dashboards"]
    seen = {}
    for _, doc in documents(paths):
        if doc["kind"] != "ConfigMap":
            continue
        for key, value in (doc.get("data") or {}).items():
            if key.endswith(".json"):
                seen[key] = (ident(doc), doc["metadata"].get("labels") or {}, value)
    for name, want in files.items():
        if name not in seen:
            p.append(f"{name}: no ConfigMap holds it")
            continue
        where, labels, text = seen[name]
        try:
            got = json.loads(text)
        except json.JSONDecodeError as e:
            p.append(f"{where}: {name} is not JSON: {e}")
            continue
        if got != want:
            p.append(f"{where}: {name} differs from files/dashboards/{name}")
        if not labels:
            p.append(f"{where}: no labels (the Grafana sidecar selects by label)")
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rbac")
    r.add_argument("--serviceaccount", help="NAMESPACE/NAME: also check it holds exactly what the controller needs")
    r.add_argument("--watch-namespaces", default="", help="comma-separated; empty: all namespaces")
    r.add_argument("--lease", help="the leader Lease's name (leader election on)")
    r.add_argument("files", nargs="+")
    s = sub.add_parser("pss")
    s.add_argument("--level", choices=["baseline", "restricted"], default="restricted")
    s.add_argument("files", nargs="+")
    c = sub.add_parser("controller")
    c.add_argument("--replicas", type=int)
    c.add_argument("files", nargs="+")
    d = sub.add_parser("dashboards")
    d.add_argument("chart")
    d.add_argument("files", nargs="+")
    args = ap.parse_args()

    if args.cmd == "rbac":
        subject = tuple(args.serviceaccount.split("/", 1)) if args.serviceaccount else None
        watch = [n for n in args.watch_namespaces.split(",") if n]
        problems = check_rbac(args.files, subject, watch, args.lease)
    elif args.cmd == "pss":
        problems = check_pss(args.files, args.level)
    elif args.cmd == "controller":
        problems = check_controller(args.files, args.replicas)
    else:
        problems = check_dashboards(args.chart, args.files)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.cmd}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
