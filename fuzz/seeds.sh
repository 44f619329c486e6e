#!/usr/bin/env bash
# Seed corpora for the fuzz targets, from ../shared/fixtures (real API
# objects) and a watch stream recorded from kcache-fakeapi.
# usage: fuzz/seeds.sh OUTDIR [BUILD]   (OUTDIR/<target>/ for each target)
set -euo pipefail
out=${1:?usage: seeds.sh OUTDIR [BUILD]}
B=${2:-build}
fx=${KC_FIXTURES:-../shared/fixtures/api-testdata}
for t in watch json status kubeconfig exec_cred selector fakeapi_http; do mkdir -p "$out/$t"; done

python3 - "$fx" "$out" <<'PY'
import glob, json, os, sys
fx, out = sys.argv[1], sys.argv[2]
def w(t, name, data):
    with open(os.path.join(out, t, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
objs = []
for p in sorted(glob.glob(os.path.join(fx, "*.json"))):
    b = os.path.basename(p)
    raw = open(p, "rb").read()
    w("json", b, raw)
    try:
        o = json.loads(raw)
    except Exception:
        continue
    if o.get("kind") == "Status":
        w("status", b, raw)
    elif o.get("kind") == "WatchEvent" or ("type" in o and "object" in o):
        w("watch", "\x10" + b, json.dumps(o, separators=(",", ":")) + "\n")
    else:
        objs.append(o)
        w("watch", "\x05" + b, json.dumps({"type": "ADDED", "object": o}, separators=(",", ":")) + "\n")
# one stream of every kind of event, small pieces
lines = []
for i, o in enumerate(objs):
    for t in ("ADDED", "MODIFIED", "DELETED"):
        lines.append(json.dumps({"type": t, "object": o}, separators=(",", ":")))
lines.append('{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"12345","annotations":{"k8s.io/initial-events-end":"true"}}}}')
lines.append('{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}')
w("watch", "all-kinds", "\x03" + "\n".join(lines) + "\n")
for code, reason in ((404, "NotFound"), (409, "AlreadyExists"), (409, "Conflict"), (410, "Gone"),
                     (429, "TooManyRequests"), (500, "InternalError"), (422, "Invalid")):
    w("status", "%d-%s" % (code, reason), json.dumps({"kind": "Status", "apiVersion": "v1",
      "metadata": {"continue": "abc"}, "status": "Failure", "message": "m", "reason": reason,
      "code": code, "details": {"name": "x", "kind": "configmaps", "retryAfterSeconds": 2,
      "causes": [{"reason": "FieldValueInvalid", "message": "bad", "field": "metadata.name"}]}}))
# kubeconfigs
ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
base = """apiVersion: v1
kind: Config
current-context: dev
preferences: {}
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: %s
    tls-server-name: kubernetes
    proxy-url: http://proxy:3128
- name: c2
  cluster: {server: "https://[::1]:443", insecure-skip-tls-verify: true}
users:
- name: u1
  user: {token: abc}
- name: u2
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/true
      args: [a, b]
      env: [{name: X, value: "1"}]
      interactiveMode: Never
      provideClusterInfo: true
- name: u3
  user: {username: a, password: b}
- name: u4
  user: {tokenFile: /dev/null, client-certificate-data: %s, client-key-data: %s}
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: team-a}
- name: other
  context: {cluster: c2, user: u2}
""" % (ca, ca, ca)
w("kubeconfig", "full", base)
w("kubeconfig", "other", base.replace("current-context: dev", "current-context: other"))
w("kubeconfig", "anchors", "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters:\n- &c {name: c, cluster: {server: 'https://h'}}\nusers:\n- {name: u, user: {}}\ncontexts:\n- {name: x, context: {cluster: c, user: u}}\n")
w("kubeconfig", "flow", '{"apiVersion":"v1","kind":"Config","current-context":"x","clusters":[{"name":"c","cluster":{"server":"https://h"}}],"users":[{"name":"u","user":{"token":"t"}}],"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}]}')
# exec credentials
for i, st in enumerate([{"token": "t"}, {"token": "t", "expirationTimestamp": "2030-01-02T03:04:05Z"},
                        {"clientCertificateData": "c", "clientKeyData": "k"},
                        {"token": "t", "expirationTimestamp": "2030-01-02T03:04:05.123+02:00"}, {}]):
    w("exec_cred", "c%d" % i, json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                                          "kind": "ExecCredential", "status": st}))
# selectors: LABEL \n FIELD
for i, s in enumerate(["app=web\nmetadata.name=a", "app in (web,db),!tier\nmetadata.namespace!=x",
                       "tier notin (x),app!=db,app==web\nspec.nodeName=n1,status.phase=Running",
                       "environment,!foo\n", "a.b/c-d=e_f\nmetadata.name==p"]):
    w("selector", "s%d" % i, s)
# raw HTTP requests (token "fuzz")
H = "Host: 127.0.0.1\r\nAuthorization: Bearer fuzz\r\n"
reqs = [
    "GET /api/v1/namespaces/load-0/configmaps?limit=2&labelSelector=a%3Db HTTP/1.1\r\n" + H + "\r\n",
    "GET /api/v1/configmaps?watch=1&resourceVersion=1&timeoutSeconds=1 HTTP/1.1\r\n" + H + "\r\n",
    "GET /apis HTTP/1.1\r\n" + H + "Connection: close\r\n\r\n",
    "POST /api/v1/namespaces/load-0/configmaps HTTP/1.1\r\n" + H + "Content-Type: application/json\r\nContent-Length: 63\r\n\r\n" +
        '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"zz"}}',
    "PATCH /api/v1/namespaces/load-0/configmaps/obj-0 HTTP/1.1\r\n" + H + "Content-Type: application/merge-patch+json\r\nContent-Length: 20\r\n\r\n" +
        '{"data":{"k":"v"}}  ',
    "PATCH /api/v1/namespaces/load-0/configmaps/obj-0 HTTP/1.1\r\n" + H + "Content-Type: application/json-patch+json\r\nContent-Length: 50\r\n\r\n" +
        '[{"op":"add","path":"/data/x","value":"1"}]       ',
    "DELETE /api/v1/namespaces/load-1/configmaps/obj-1 HTTP/1.1\r\n" + H + "\r\n",
    "PUT /api/v1/namespaces/load-0/configmaps/obj-0 HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n",
]
for i, r in enumerate(reqs):
    w("fakeapi_http", "r%d" % i, r)
PY

# a watch stream recorded from the fake API server
if [ -x "$B/kcache-fakeapi" ]; then
    tmp=$(mktemp -d)
    "$B/kcache-fakeapi" --ca-out "$tmp/ca" --token t --preload 40 --load-namespaces 3 \
        >"$tmp/out" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do grep -q '^ready ' "$tmp/out" 2>/dev/null && break; sleep 0.05; done
    url=$(sed -n 's/^ready //p' "$tmp/out")
    if [ -n "$url" ]; then
        { printf '\x20'; curl -s --noproxy '*' --cacert "$tmp/ca" -H 'Authorization: Bearer t' \
            "$url/api/v1/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"; } \
            >"$out/watch/recorded" || true
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
fi
echo "seeds: $(find "$out" -type f | wc -l) files in $out"
