"""Every bad manifest of the corpus is refused through load_revision with the exact `file:line: field`."""
from __future__ import annotations

from pathlib import Path

import pytest

from _gitrepo import Link, commit_files
from gitkube.source import load_revision

CORPUS = Path(__file__).parent / "bad_manifests"

# file -> every expected (line, field, a word of the message); field "" is the whole document.
EXPECTED: dict[str, list[tuple[int | None, str, str]]] = {
    "malformed-yaml.yaml": [(5, "", "malformed YAML")],
    "tabs.yaml": [(4, "", "tab character")],
    "yaml-bomb.yaml": [(5, "e[0]", "YAML bomb")],  # the alias on line 5 crosses the limit
    "unknown-kind.yaml": [(2, "kind", '"StatefulSet"')],
    "unknown-apiversion.yaml": [(1, "apiVersion", '"apps/v1"')],
    "unknown-field.yaml": [(9, "spec.containers[0].imagee", 'unknown field "imagee"')],
    "wrong-type.yaml": [(6, "spec.replicas", "expected an integer")],
    "bad-quantity.yaml": [(11, "spec.containers[0].resources.limits.memory", 'invalid quantity "12XB"')],
    "bad-name.yaml": [(4, "metadata.name", "RFC 1123 subdomain")],
    "too-long-name.yaml": [(9, "spec.containers[1].name", "no more than 63 characters")],
    "duplicate-object.yaml": [(4, "metadata.name", "duplicate-object.yaml:13"),
                              (13, "metadata.name", "duplicate-object.yaml:4")],
    "duplicate-container-names.yaml": [(9, "spec.containers[1].name", 'Duplicate value: "app"')],
    "duplicate-container-ports.yaml": [(11, "spec.containers[0].ports[1].containerPort", '"8080/TCP"')],
    "hostport-out-of-range.yaml": [(11, "spec.containers[0].ports[0].hostPort", "between 1 and 65535")],
    "nodeport-out-of-range.yaml": [(11, "spec.ports[0].nodePort", "between 30000 and 32767")],
    "negative-replicas.yaml": [(6, "spec.replicas", "greater than or equal to 0")],
    "rc-selector-mismatch.yaml": [(11, "spec.template.metadata.labels", "does not match")],
    "rc-restart-policy.yaml": [(11, "spec.template.spec.restartPolicy", '"OnFailure"')],
    "liveness-success-threshold.yaml": [(12, "spec.containers[0].livenessProbe.successThreshold", "must be 1")],
    "probe-two-handlers.yaml": [(12, "spec.containers[0].readinessProbe.tcpSocket", "more than 1 handler")],
    "probe-no-handler.yaml": [(9, "spec.containers[0].livenessProbe", "must specify a handler")],
    "hook-two-handlers.yaml": [(13, "spec.containers[0].lifecycle.preStop.httpGet", "more than 1 handler")],
    "hook-no-handler.yaml": [(10, "spec.containers[0].lifecycle.postStart", "must specify a handler")],
    "env-value-and-valuefrom.yaml": [(12, "spec.containers[0].env[0].valueFrom", "`value` is not empty")],
    "unsupported-fieldref.yaml": [(13, "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
                                   '"metadata.labels"')],
    "non-utf8.yaml": [(9, "", "not valid UTF-8")],
    "bad-json.json": [(6, "", "malformed JSON")],
    "json-duplicate-key.json": [(5, "", 'duplicate field "metadata"')],
    "list-item-invalid.json": [(16, "spec.containers[0].ports[0].containerPort", "between 1 and 65535")],
    "duplicate-key.yaml": [(9, "spec.containers[0].image", 'duplicate field "image"')],
    "unknown-namespace.yaml": [(5, "metadata.namespace", 'namespace "staging"')],
    "python-tag.yaml": [(6, "metadata.annotations.run", "unsupported YAML tag")],
    "no-containers.yaml": [(5, "spec.containers", "Required value")],
    "volume-mount-unknown.yaml": [(10, "spec.containers[0].volumeMounts[0].name", 'Not found: "data"')],
    "loadbalancer.yaml": [(6, "spec.type", '"LoadBalancer"')],
    "bad-label.yaml": [(6, "metadata.labels.tier", '"front end!"')],
    "bad-restart-policy.yaml": [(6, "spec.restartPolicy", '"Sometimes"')],
    "probe-unknown-port-name.yaml": [(11, "spec.containers[0].readinessProbe.httpGet.port", 'no container port')],
    "not-a-mapping.yaml": [(1, "", "expected an object")],
    "hostpath-dotdot.yaml": [(12, "spec.volumes[0].hostPath.path", "must not contain '..'")],
    "image-shell.yaml": [(8, "spec.containers[0].image", "valid image reference")],
    "deep.json": [(3, "", "nested more than 100 levels deep")],
    "deep-yaml.yaml": [(5, "", "nested more than 100 levels deep")],
}

GOOD_POD = b"""apiVersion: v1
kind: Pod
metadata:
  name: fine
spec:
  containers:
    - name: app
      image: gitkube/busybox:latest
"""


def _check(repo: Path, files: dict, expected: list[tuple[str, int | None, str, str]]) -> None:
    # A valid neighbour proves that one bad file refuses the whole revision, not just itself.
    files = {"manifests/ok/good.yaml": GOOD_POD, **files}
    sha = commit_files(str(repo), files)
    rev = load_revision(str(repo))
    assert rev.sha == sha
    got = [(p.path, p.line, p.field) for p in rev.problems]
    assert got == [(path, line, field) for path, line, field, _ in expected], [str(p) for p in rev.problems]
    for p, (_, _, _, word) in zip(rev.problems, expected):
        assert word in p.message, str(p)
    assert rev.objects == [], "an invalid revision must be refused whole"


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)
    assert len(EXPECTED) + 2 >= 30  # plus the generated oversized file and escaping symlink below


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_manifest_is_refused_at_its_location(tmp_path: Path, name: str) -> None:
    path = f"manifests/{name}"
    _check(tmp_path / "repo", {path: (CORPUS / name).read_bytes()},
           [(path, line, field, word) for line, field, word in EXPECTED[name]])


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = GOOD_POD + b"# " + b"x" * (1 << 20) + b"\n"
    _check(tmp_path / "repo", {"manifests/big.yaml": big}, [("manifests/big.yaml", None, "", "limit of 1048576")])


def test_symlink_escaping_the_path_is_refused(tmp_path: Path) -> None:
    _check(tmp_path / "repo", {"secret.yaml": GOOD_POD, "manifests/escape.yaml": Link("../secret.yaml")},
           [("manifests/escape.yaml", None, "", "points outside")])


def test_absolute_symlink_is_refused(tmp_path: Path) -> None:
    _check(tmp_path / "repo", {"manifests/passwd.yaml": Link("/etc/passwd")},
           [("manifests/passwd.yaml", None, "", "points outside")])


def test_duplicate_object_across_files_names_both(tmp_path: Path) -> None:
    twin = GOOD_POD.replace(b"name: fine", b"name: twin")
    _check(tmp_path / "repo", {"manifests/a.yaml": twin, "manifests/b/c.yaml": twin},
           [("manifests/a.yaml", 4, "metadata.name", "manifests/b/c.yaml:4"),
            ("manifests/b/c.yaml", 4, "metadata.name", "manifests/a.yaml:4")])


def test_all_errors_of_a_revision_are_reported_not_just_the_first(tmp_path: Path) -> None:
    files = {f"manifests/{n}": (CORPUS / n).read_bytes()
             for n in ("tabs.yaml", "bad-json.json", "hostport-out-of-range.yaml", "negative-replicas.yaml")}
    commit_files(str(tmp_path / "repo"), files)
    rev = load_revision(str(tmp_path / "repo"))
    assert {p.path for p in rev.problems} == set(files)
    assert str(rev.problems[1]).startswith("manifests/hostport-out-of-range.yaml:11: "
                                           "spec.containers[0].ports[0].hostPort: Invalid value: 70000")
