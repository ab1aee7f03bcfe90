"""Object diff: added/changed/removed, store-owned fields and defaults never show as differences."""
from __future__ import annotations

from gitkube.reconcile.objdiff import object_changes, render_change, render_changes, summarise, strip_object


def pod(name, image="nginx:1.25", **meta):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", **meta},
            "spec": {"containers": [{"name": "c", "image": image}], "restartPolicy": "Always"}}


def stored(obj, **meta):
    out = {**obj, "metadata": {**obj["metadata"], "uid": "u-1", "creationTimestamp": "2024-01-01T00:00:00Z",
                               "generation": 3, "resourceVersion": "42", **meta},
           "status": {"phase": "Running"}}
    return out


def same(x):
    return x


def test_in_sync_ignores_store_owned_fields_and_status():
    assert object_changes([pod("a")], [stored(pod("a"))], normalise=same) == []


def test_add_change_remove():
    changes = object_changes([pod("a", image="nginx:1.26"), pod("b")], [stored(pod("a")), stored(pod("c"))],
                             normalise=same)
    assert [(c.action, c.name) for c in changes] == [("change", "a"), ("add", "b"), ("remove", "c")]
    text = render_changes(changes)
    assert "--- live/Pod/default/a\n+++ desired/Pod/default/a\n" in text
    assert "-  - image: nginx:1.25\n+  - image: nginx:1.26\n" in text
    assert "--- /dev/null\n+++ desired/Pod/default/b\n" in text
    assert "--- live/Pod/default/c\n+++ /dev/null\n" in text
    assert "uid" not in text and "resourceVersion" not in text and "status" not in text
    assert summarise(changes) == "1 to add, 1 to change, 1 to remove"


def test_defaults_on_one_side_are_not_a_change():
    def fill(o):  # stand-in for the models' defaulting
        o = strip_object(o)
        for c in o["spec"]["containers"]:
            c.setdefault("imagePullPolicy", "IfNotPresent")
        return o

    desired = pod("a")
    desired["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert object_changes([desired], [stored(pod("a"))], normalise=fill) == []


def test_objects_marked_for_deletion_count_as_absent():
    gone = stored(pod("a"), deletionTimestamp="2024-01-02T00:00:00Z")
    assert object_changes([], [gone], normalise=same) == []
    [c] = object_changes([pod("a")], [gone], normalise=same)
    assert c.action == "add"


def test_namespace_defaults_and_cluster_scope():
    p = pod("a")
    del p["metadata"]["namespace"]
    assert object_changes([p], [stored(pod("a"))], normalise=same) == []
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    [c] = object_changes([ns, pod("a")], [stored(pod("a"))], normalise=same)
    assert (c.kind, c.namespace, c.ref) == ("Namespace", "", "Namespace/shop")
    assert render_change(c).startswith("--- /dev/null\n+++ desired/Namespace/shop\n")


def test_fast_yaml_layout_matches_pyyaml() -> None:
    """to_yaml lays out JSON data itself; it must print exactly what yaml.dump prints, or hand over to it."""
    import glob
    import os

    import yaml as _yaml

    from gitkube.reconcile.objdiff import _dump, to_yaml

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    docs = [{"a": [{"b": 1, "c": [1, 2]}, [], {}], "d": {}, "e": [], "f": "x y " * 30, "g": 1.5, "h": None,
             "i": True, "j": "é", "k": "multi\nline", "l": "12:30", "m": "yes", "n": "", "o": [[1]], "p": "-x",
             "q": "registry.local/app:1.0", "r": {"deep": {"er": [{"x": "a b"}]}}, "s": 10 ** 20, "t": "a: b"}]
    for f in sorted(glob.glob(os.path.join(root, "manifests", "**", "*.yaml"), recursive=True)):
        with open(f) as fh:
            docs.extend(d for d in _yaml.safe_load_all(fh) if isinstance(d, dict))
    assert len(docs) > 5
    for d in docs:
        assert to_yaml(d) == _dump(d)
