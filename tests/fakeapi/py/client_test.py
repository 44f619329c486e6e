"""Drive the fake API server with Debian's python3-kubernetes.

Usage: client_test.py KUBECONFIG
Lists, creates, patches, deletes and watches ConfigMaps; every check that
fails prints what was expected and what came back, and the exit status is
non-zero.
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

failures = []


def check(cond, what):
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what)
        failures.append(what)


def main():
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()

    nss = [n.metadata.name for n in v1.list_namespace().items]
    check("default" in nss, "list namespaces includes default: %s" % nss)

    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py1", labels={"app": "py"}),
                            data={"x": "1"})
    created = v1.create_namespaced_config_map("py", cm)
    check(created.metadata.uid and created.metadata.resource_version,
          "create returns uid and resourceVersion")
    try:
        v1.create_namespaced_config_map("py", cm)
        check(False, "second create raises 409")
    except ApiException as e:
        check(e.status == 409 and "AlreadyExists" in e.body, "second create: 409 AlreadyExists")
    try:
        v1.read_namespaced_config_map("nope", "py")
        check(False, "read of a missing object raises 404")
    except ApiException as e:
        check(e.status == 404 and "NotFound" in e.body, "read missing: 404 NotFound")

    lst = v1.list_namespaced_config_map("py", label_selector="app=py")
    check([i.metadata.name for i in lst.items] == ["py1"],
          "list with labelSelector: %s" % [i.metadata.name for i in lst.items])

    seen = []

    def writer():
        time.sleep(1.0)
        v1.create_namespaced_config_map(
            "py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1"), data={"a": "1"}))
        v1.patch_namespaced_config_map("w1", "py", {"data": {"a": "2"}})
        v1.delete_namespaced_config_map("w1", "py")

    t = threading.Thread(target=writer)
    t.start()
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "py", timeout_seconds=8):
        obj = ev["object"]
        name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
        if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
            seen.append((ev["type"], name))
        if ("DELETED", "w1") in seen:
            w.stop()
    t.join()
    check(("ADDED", "py1") in seen, "watch: initial ADDED py1")
    w1 = [e for e in seen if e[1] == "w1"]
    check(w1 == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")],
          "watch: ADDED, MODIFIED, DELETED of w1: %s" % w1)

    v1.delete_namespace("py")
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all python client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
