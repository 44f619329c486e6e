#!/usr/bin/env python3
"""RBAC grants of kcache-controller as sorted "SCOPE GROUP RESOURCE VERB" lines.

  rbac.py from-manifests [FILE]
      FILE (default stdin) is the output of `kubectl kustomize manifests/`.
      Prints what the ServiceAccount kcache-controller is granted: "cluster"
      for ClusterRoles bound by ClusterRoleBindings, "namespace" for Roles
      bound by RoleBindings in the ServiceAccount's own namespace.  A rule
      limited by resourceNames gives "RESOURCE:NAME" per name.  Fails on
      anything the line format cannot express without hiding a grant
      (wildcards, nonResourceURLs, a Role bound elsewhere).

  rbac.py from-requests --lease-namespace NS [FILE]
      FILE (default stdin) holds one request per line, "METHOD URL" (URL is
      the path and query, e.g. "GET /api/v1/secrets?watch=true"); other words
      after the URL are ignored, as are blank lines and lines starting with #.
      Prints the verbs those requests needed, in the same format, so that the
      result can be compared with tests/deploy/expected-rbac.txt.  Leases in
      NS are "namespace" scope, everything else "cluster"; a request naming
      one Lease gives "leases:NAME" (the Role grants get/update on one
      Lease by name).  Discovery and
      other non-resource paths (/api, /apis, /version, /openapi/...) are
      granted to every authenticated user and are skipped.

Exit status 0, or 1 with a message on stderr.
"""
import sys
from urllib.parse import urlsplit, parse_qs

SA_NAME = "kcache-controller"


def die(msg):
    sys.stderr.write("rbac.py: %s\n" % msg)
    sys.exit(1)


def group_name(g):
    return "core" if g == "" else g


def rules_lines(scope, rules, where):
    out = set()
    for r in rules or []:
        if r.get("nonResourceURLs"):
            die("%s: nonResourceURLs are not expected" % where)
        names = r.get("resourceNames") or [None]
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    if "*" in (g, res, v):
                        die("%s: wildcard in a rule (%r %r %r)" % (where, g, res, v))
                    for n in names:
                        out.add("%s %s %s %s" % (scope, group_name(g), res if n is None else res + ":" + n, v))
    return out


def from_manifests(stream):
    try:
        import yaml
    except ImportError:
        die("python3 module yaml is missing (Debian: python3-yaml)")
    docs = [d for d in yaml.safe_load_all(stream) if d]
    sa = [d for d in docs if d.get("kind") == "ServiceAccount"
          and d["metadata"]["name"] == SA_NAME]
    if len(sa) != 1:
        die("expected one ServiceAccount %s, found %d" % (SA_NAME, len(sa)))
    sa_ns = sa[0]["metadata"].get("namespace")

    def binds_sa(b):
        return any(s.get("kind") == "ServiceAccount" and s.get("name") == SA_NAME
                   and s.get("namespace") == sa_ns for s in b.get("subjects") or [])

    def find(kind, name, ns=None):
        for d in docs:
            m = d["metadata"]
            if d.get("kind") == kind and m["name"] == name and m.get("namespace") == ns:
                return d
        die("%s %s%s is referenced but not defined" % (kind, (ns + "/") if ns else "", name))

    lines = set()
    for b in docs:
        kind = b.get("kind")
        if kind not in ("ClusterRoleBinding", "RoleBinding") or not binds_sa(b):
            continue
        ref = b["roleRef"]
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            die("%s %s: roleRef apiGroup %r" % (kind, b["metadata"]["name"], ref.get("apiGroup")))
        if kind == "ClusterRoleBinding":
            if ref["kind"] != "ClusterRole":
                die("ClusterRoleBinding %s refers to a %s" % (b["metadata"]["name"], ref["kind"]))
            role = find("ClusterRole", ref["name"])
            lines |= rules_lines("cluster", role.get("rules"), "ClusterRole " + ref["name"])
        else:
            bns = b["metadata"].get("namespace")
            if bns != sa_ns:
                die("RoleBinding %s/%s grants outside the controller's namespace %s"
                    % (bns, b["metadata"]["name"], sa_ns))
            if ref["kind"] == "Role":
                role = find("Role", ref["name"], bns)
            else:
                role = find("ClusterRole", ref["name"])
            lines |= rules_lines("namespace", role.get("rules"), "%s %s" % (ref["kind"], ref["name"]))
    return lines


def verb_of(method, has_name, query):
    method = method.upper()
    if method == "GET":
        if has_name:
            return "get"
        w = query.get("watch", [""])[-1]
        return "watch" if "watch" in query and w not in ("0", "false", "False") else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    return None


def from_requests(stream, lease_ns):
    lines = set()
    for n, raw in enumerate(stream, 1):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        parts = raw.split()
        if len(parts) < 2:
            die("line %d: expected 'METHOD URL': %r" % (n, raw))
        method, url = parts[0], parts[1]
        u = urlsplit(url)
        query = parse_qs(u.query, keep_blank_values=True)
        seg = [s for s in u.path.split("/") if s]
        if seg[:2] == ["api", "v1"]:
            group, rest = "", seg[2:]
        elif len(seg) >= 3 and seg[0] == "apis":
            group, rest = seg[1], seg[3:]
        else:
            continue  # discovery, /version, /openapi, /healthz ...
        if not rest:
            continue  # /api/v1, /apis/GROUP/VERSION: discovery
        ns = None
        if rest[0] == "namespaces" and len(rest) == 3 and rest[2] in ("status", "finalize"):
            pass  # a subresource of the namespace itself
        elif rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        resource = rest[0]
        if len(rest) >= 3:
            resource = "%s/%s" % (rest[0], rest[2])  # subresource
        verb = verb_of(method, len(rest) >= 2, query)
        if verb is None:
            die("line %d: unknown method %r" % (n, method))
        scope = "namespace" if (group == "coordination.k8s.io" and resource == "leases"
                                and ns == lease_ns) else "cluster"
        if resource == "leases" and len(rest) == 2:
            resource = "leases:" + rest[1]
        lines.add("%s %s %s %s" % (scope, group_name(group), resource, verb))
    return lines


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return 0 if len(argv) >= 2 else 1
    cmd, args = argv[1], argv[2:]
    lease_ns = None
    if cmd == "from-requests":
        if len(args) < 2 or args[0] != "--lease-namespace":
            die("usage: rbac.py from-requests --lease-namespace NS [FILE]")
        lease_ns, args = args[1], args[2:]
    elif cmd != "from-manifests":
        die("unknown command %r (from-manifests or from-requests)" % cmd)
    stream = open(args[0]) if args else sys.stdin
    with stream:
        lines = from_manifests(stream) if cmd == "from-manifests" else from_requests(stream, lease_ns)
    for line in sorted(lines):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
