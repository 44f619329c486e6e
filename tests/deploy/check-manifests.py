#!/usr/bin/env python3
"""Checks the output of `kubectl kustomize manifests/` (FILE or stdin).

  check-manifests.py [--controller-help FILE] [--list] [FILE]

Fails (exit 1, one line per problem on stderr) unless the manifests hold the
objects kcache-controller needs with the settings issue 7 asks for: the
namespace kcache-system, the ServiceAccount, the RBAC objects, and a hardened
Deployment (2 replicas, --leader-elect, resource requests and limits, the
restricted securityContext, POD_NAME from the downward API, probes on 8081,
metrics port 8080 named "metrics").  With --controller-help FILE (the output
of `kcache-controller --help`) every flag in the Deployment's args must be
one the controller documents.  With --list it prints one line per object,
"RESOURCE.GROUP NAMESPACE NAME" (NAMESPACE "-" when cluster-scoped), for
tests that create and delete them.
"""
import re
import sys

NS = "kcache-system"
SA = "kcache-controller"
UID = 65532
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def plural(kind):
    k = kind.lower()
    return k + ("es" if k.endswith("s") else "s")


def main(argv):
    import yaml
    args = argv[1:]
    help_text = None
    list_mode = False
    while args and args[0].startswith("--"):
        if args[0] == "--controller-help":
            with open(args[1]) as f:
                help_text = f.read()
            args = args[2:]
        elif args[0] == "--list":
            list_mode, args = True, args[1:]
        else:
            sys.stderr.write(__doc__)
            return 1
    stream = open(args[0]) if args else sys.stdin
    docs = [d for d in yaml.safe_load_all(stream) if d]

    def get(kind, name=None):
        return [d for d in docs if d.get("kind") == kind
                and (name is None or d["metadata"]["name"] == name)]

    if list_mode:
        for d in docs:
            group = d["apiVersion"].rpartition("/")[0]
            res = plural(d["kind"]) + ("." + group if group else "")
            print("%s %s %s" % (res, d["metadata"].get("namespace", "-"), d["metadata"]["name"]))
        return 0

    kinds = sorted(d["kind"] for d in docs)
    check(kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                           "Role", "RoleBinding", "Deployment"]),
          "unexpected set of objects: %s" % kinds)
    check(len(get("Namespace", NS)) == 1, "no Namespace %s" % NS)
    for d in docs:
        if d["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            check("namespace" not in d["metadata"], "%s %s has a namespace" % (d["kind"], d["metadata"]["name"]))
        else:
            check(d["metadata"].get("namespace") == NS,
                  "%s %s is not in %s" % (d["kind"], d["metadata"]["name"], NS))
    check(len(get("ServiceAccount", SA)) == 1, "no ServiceAccount %s" % SA)

    # Leases only through a Role in its own namespace, never cluster-wide.
    for cr in get("ClusterRole"):
        for r in cr.get("rules", []):
            check("coordination.k8s.io" not in r.get("apiGroups", []),
                  "ClusterRole %s grants leases cluster-wide" % cr["metadata"]["name"])
    lease_rules = [r for role in get("Role") for r in role.get("rules", [])
                   if "leases" in r.get("resources", [])]
    check(lease_rules and all(r.get("apiGroups") == ["coordination.k8s.io"] for r in lease_rules),
          "no Role for coordination.k8s.io leases")

    deps = get("Deployment")
    if not check(len(deps) == 1, "expected one Deployment"):
        return report()
    dep = deps[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    check(spec.get("replicas") == 2, "replicas is %r, not 2" % spec.get("replicas"))
    sel = spec.get("selector", {}).get("matchLabels", {})
    tmpl_labels = spec["template"]["metadata"].get("labels", {})
    check(sel and all(tmpl_labels.get(k) == v for k, v in sel.items()),
          "selector %s does not match the pod labels %s" % (sel, tmpl_labels))
    check(pod.get("serviceAccountName") == SA, "serviceAccountName is not %s" % SA)
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod runAsNonRoot is not true")
    check(psc.get("runAsUser") == UID, "pod runAsUser is not %d (the image's user)" % UID)
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile is not RuntimeDefault")
    check(not pod.get("hostNetwork") and not pod.get("hostPID"), "pod uses host namespaces")
    cs = pod.get("containers", [])
    if not check(len(cs) == 1, "expected one container"):
        return report()
    c = cs[0]
    args_ = c.get("args", []) + c.get("command", [])
    check("--leader-elect" in args_ or "--leader-elect=true" in args_, "no --leader-elect in args")
    check(any(a.startswith("--leader-election-namespace") for a in args_), "no --leader-election-namespace in args")
    check("--metrics-bind-address=:8080" in args_, "metrics not bound to :8080")
    check("--health-probe-bind-address=:8081" in args_, "probes not bound to :8081")
    res = c.get("resources", {})
    for k in ("requests", "limits"):
        for r in ("cpu", "memory"):
            check(r in res.get(k, {}), "no resources.%s.%s" % (k, r))
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities.drop is not [ALL]")
    check(sc.get("capabilities", {}).get("add") in (None, []), "capabilities are added")
    check(sc.get("privileged") in (None, False), "privileged container")
    check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "container runAsNonRoot")
    check(sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
          "container seccompProfile is not RuntimeDefault")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "POD_NAME does not come from metadata.name")
    ports = {p.get("name"): p for p in c.get("ports", [])}
    check(ports.get("metrics", {}).get("containerPort") == 8080, "no port 8080 named metrics")
    port_by_name = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        hg = c.get(probe, {}).get("httpGet", {})
        port = hg.get("port")
        port = port_by_name.get(port, port)
        check(hg.get("path") == path and port == 8081, "%s is not %s on 8081 (%s)" % (probe, path, hg))
    # $(VAR) references in args must name env vars the kubelet can expand.
    for a in args_:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
            check(var in env, "args use $(%s) which is not in env" % var)
    if help_text is not None:
        for a in args_:
            if a.startswith("--"):
                flag = a.split("=", 1)[0]
                check(re.search(re.escape(flag) + r"\b", help_text) is not None,
                      "kcache-controller --help does not document %s" % flag)
    return report()


def report():
    for p in problems:
        sys.stderr.write("check-manifests: %s\n" % p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
