"""ConfigMaps and Secrets without a fleet: validation as Kubernetes does it, age decryption and the plain-text
refusal with file:line, the one redaction, env/volume resolution with the kubelet's errors, and the digests that
recreate env readers and roll Deployments."""
from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import yaml

from gitkube.api import ObjectInvalid, parse_object, redact, to_k8s
from gitkube.api.config import config_data
from gitkube.api.printers import describe_secret, kube_object
from gitkube.reconcile.configrefs import (
    ConfigError, affected, env_config_digest, template_config_inputs, volume_files,
)
from gitkube.reconcile.containerenv import container_env
from gitkube.source import load_revision
from gitkube.source.loader import load_files
from gitkube.source.secrets import IdentityError, Identities, decrypt_files, encrypt, load_identities

from pyrage import x25519

SECRET_VALUE = "hunter2-very-secret"


def secret(**kw) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **kw}


def cm(data=None, **kw) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data or {}, **kw}


def errors(doc) -> list[tuple[str, str]]:
    with pytest.raises(ObjectInvalid) as e:
        parse_object(doc)
    return e.value.errors


# -- validation ---------------------------------------------------------------------------------------------
def test_key_names_as_kubernetes_checks_them():
    errs = dict(errors(cm({"ok.key_1-2": "x", "bad/key": "x", "..hidden": "x", ".": "x"})))
    assert errs["data[bad/key]"].startswith('Invalid value: "bad/key": a valid config key must consist of')
    assert errs["data[..hidden]"] == 'Invalid value: "..hidden": must not start with \'..\''
    assert errs["data[.]"] == 'Invalid value: ".": must not be \'.\''
    assert "data[ok.key_1-2]" not in errs


def test_size_limit_and_duplicate_keys():
    big = "x" * (1 << 20)
    assert ("", "Too long: must have at most 1048576 bytes") in errors(cm({"a": big}))
    assert ("binaryData.a", 'Invalid value: "a": duplicate of key present in data') in errors(
        cm({"a": "1"}, binaryData={"a": "MQ=="}))
    assert ("data", "Too long: must have at most 1048576 bytes") in errors(secret(stringData={"a": big}))


@pytest.mark.parametrize("typ,data,missing", [
    ("kubernetes.io/basic-auth", {}, ["data.username", "data.password"]),
    ("kubernetes.io/tls", {"tls.crt": "YQ=="}, ["data[tls.key]"]),
    ("kubernetes.io/ssh-auth", {}, ["data[ssh-privatekey]"]),
])
def test_secret_types_require_their_keys(typ, data, missing):
    errs = errors(secret(type=typ, data=data))
    assert [p for p, m in errs if m == "Required value"] == missing
    assert parse_object(secret(type="kubernetes.io/basic-auth", stringData={"password": "p"}))
    assert parse_object(secret(type="example.com/custom", data={"x": "YQ=="}))  # any other type: any keys


def test_secret_errors_never_show_a_value():
    errs = errors(secret(data={"a": SECRET_VALUE + "!"}))
    assert errs == [("data.a", 'Invalid value: "<secret contents redacted>": illegal base64 data')]
    errs = errors(secret(stringData={"b": 12345}))
    assert errs == [("stringData.b", 'Invalid value: "<secret contents redacted>": expected a string, got integer')]


def test_pod_references_are_validated():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "busybox:1", "envFrom": [{"prefix": "1BAD", "configMapRef": {"name": "c"}}],
                        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"},
                                                            "secretKeyRef": {"name": "s", "key": "k"}}}]}],
        "volumes": [{"name": "v", "secret": {"secretName": "s", "defaultMode": 0o1000,
                                             "items": [{"key": "k", "path": "/abs"}, {"key": "k2", "path": "a/../b"}]}}]}}
    errs = dict(errors(pod))
    assert errs["spec.containers[0].env[0].valueFrom"] == "Invalid value: may not have more than one field specified at a time"
    assert errs["spec.containers[0].envFrom[0].prefix"].startswith('Invalid value: "1BAD"')
    assert errs["spec.volumes[0].secret.defaultMode"] == ("Invalid value: 512: must be a number between 0 and 0777 "
                                                          "(octal), both inclusive")
    assert errs["spec.volumes[0].secret.items[0].path"] == 'Invalid value: "/abs": must be a relative path'
    assert errs["spec.volumes[0].secret.items[1].path"] == 'Invalid value: "a/../b": must not contain \'..\''


# -- redaction ----------------------------------------------------------------------------------------------
def test_one_redaction_for_every_output():
    s = parse_object(secret(data={"a": base64.b64encode(SECRET_VALUE.encode()).decode()}, stringData={"b": "xyz"},
                            metadata={"name": "s", "annotations": {
                                "kubectl.kubernetes.io/last-applied-configuration": SECRET_VALUE}}))
    shown = redact(to_k8s(s), b"key")
    assert set(shown["data"]) == {"a", "b"} and "stringData" not in shown
    assert shown["data"]["a"].startswith(f"<redacted: {len(SECRET_VALUE)} bytes, hmac ")
    assert SECRET_VALUE not in repr(shown) and base64.b64encode(SECRET_VALUE.encode()).decode() not in repr(shown)
    assert redact(shown, b"other") == shown  # idempotent: already redacted values stay
    assert SECRET_VALUE not in repr(kube_object(to_k8s(s)))
    page = describe_secret(to_k8s(s))
    assert f"a:  {len(SECRET_VALUE)} bytes" in page and "b:  3 bytes" in page and SECRET_VALUE not in page
    assert redact({"kind": "List", "items": [to_k8s(s)]})["items"][0]["data"]["b"].startswith("<redacted: 3 bytes")
    assert redact(cm({"k": "v"})) == cm({"k": "v"})


# -- age and the loader -------------------------------------------------------------------------------------
@pytest.fixture()
def age_key(tmp_path) -> tuple[Path, str]:
    ident = x25519.Identity.generate()
    p = tmp_path / "key.txt"
    p.write_text(f"# a test key\n{ident}\n")
    return p, str(ident.to_public())


def _repo(tmp_path: Path, files: dict[str, bytes]) -> Path:
    repo = tmp_path / "repo"
    for name, data in files.items():
        f = repo / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    return repo


def test_encrypted_secret_is_decrypted_and_redacted(tmp_path, age_key):
    key, pub = age_key
    doc = yaml.safe_dump(secret(stringData={"password": SECRET_VALUE})).encode()
    repo = _repo(tmp_path, {"manifests/s.yaml.age": encrypt(doc, [pub]),
                            "manifests/b.yaml.age": encrypt(yaml.safe_dump(cm({"k": "v"})).encode(), [pub], armor=False)})
    rev = load_revision(str(repo), identities=load_identities(str(key)))
    assert not rev.problems
    s = next(o for o in rev.objects if o.kind == "Secret")
    assert s.stringData is None and s.data["password"].startswith("<redacted:")
    assert rev.config[("Secret", "default", "s")].data == {"password": SECRET_VALUE.encode()}
    assert SECRET_VALUE not in repr(rev)


def test_undecryptable_and_plaintext_are_refused_with_file_and_line(tmp_path, age_key):
    key, pub = age_key
    other = x25519.Identity.generate()
    good = encrypt(yaml.safe_dump(secret(stringData={"p": "x"})).encode(), [str(other.to_public())])
    corrupt = bytearray(encrypt(b"kind: Secret\n", [pub], armor=False))
    corrupt[-5] ^= 0xFF
    repo = _repo(tmp_path, {"manifests/other.yaml.age": good, "manifests/corrupt.yaml.age": bytes(corrupt),
                            "manifests/plain.yaml": b"# a comment\n" + yaml.safe_dump(secret(stringData={"p": "x"})).encode()})
    rev = load_revision(str(repo), identities=load_identities(str(key)))
    text = "\n".join(map(str, rev.problems))
    assert "manifests/other.yaml.age: <document>: cannot be decrypted: no matching identity" in text
    assert "manifests/corrupt.yaml.age: <document>: cannot be decrypted: corrupted or truncated age file" in text
    assert "manifests/plain.yaml:3: kind: a Secret in plain text in Git is refused" in text
    assert rev.objects == [] and rev.config == {}
    no_key = load_revision(str(repo))
    assert any("no identity was given" in p.message for p in no_key.problems)


def test_plaintext_opt_in(tmp_path):
    repo = _repo(tmp_path, {"manifests/plain.yaml": yaml.safe_dump(secret(stringData={"p": "x"})).encode(),
                            ".gitkube-plaintext-secrets": b"examples and tests only\n"})
    assert not load_revision(str(repo)).problems
    assert not load_files([("a.yaml", yaml.safe_dump(secret()).encode())], plaintext_secrets=True).problems


def test_identity_file_errors(tmp_path):
    with pytest.raises(IdentityError, match="cannot read"):
        load_identities(str(tmp_path / "nope"))
    (tmp_path / "bad").write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(IdentityError, match=r"bad:1: not an age identity") as e:
        load_identities(str(tmp_path / "bad"))
    assert "NOTAKEY" not in str(e.value)
    with pytest.raises(ValueError, match="not an age recipient"):
        encrypt(b"x", ["age1nope"])
    assert decrypt_files([("a.yaml", b"x")], Identities()) == ([("a.yaml", b"x")], [])


# -- env and volumes ----------------------------------------------------------------------------------------
def _config():
    c = parse_object(cm({"GREETING": "hi", "1st": "x"}, binaryData={"bin": "AAE="}))
    s = parse_object(secret(stringData={"password": SECRET_VALUE}))
    return {("ConfigMap", "default", "c"): config_data(c, None), ("Secret", "default", "s"): config_data(s, b"k")}


def _pod(env=None, env_from=None, volumes=None, mounts=None):
    return parse_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "busybox:1", "env": env or [], "envFrom": env_from or [],
                        "volumeMounts": mounts or []}], "volumes": volumes or []}})


def test_env_from_config_and_secret():
    pod = _pod(env=[{"name": "G", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "GREETING"}}},
                    {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                    {"name": "O", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": True}}},
                    {"name": "X", "value": "$(G)-x"}],
               env_from=[{"prefix": "CM_", "configMapRef": {"name": "c"}}, {"configMapRef": {"name": "c"}},
                         {"secretRef": {"name": "gone", "optional": True}}])
    warnings: list[str] = []
    env = dict(container_env(pod, "u", pod.spec.containers[0], "n1", None, None, [], _config(), warnings))
    assert env["G"] == "hi" and env["P"] == SECRET_VALUE and env["X"] == "hi-x" and "O" not in env
    assert env["CM_GREETING"] == "hi" and "CM_bin" not in env  # env takes a ConfigMap's `data` only
    assert warnings == ["Keys [1st] from the EnvFrom configmap default/c were skipped since they are "
                        "considered invalid environment variable names."]


@pytest.mark.parametrize("ref,message", [
    ({"configMapKeyRef": {"name": "c", "key": "MISSING"}}, "couldn't find key MISSING in ConfigMap default/c"),
    ({"secretKeyRef": {"name": "s", "key": "MISSING"}}, "couldn't find key MISSING in Secret default/s"),
    ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
    ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
])
def test_missing_references_give_the_kubelets_reason(ref, message):
    pod = _pod(env=[{"name": "A", "valueFrom": ref}])
    with pytest.raises(ConfigError) as e:
        container_env(pod, "u", pod.spec.containers[0], "n1", None, None, [], _config())
    assert str(e.value) == message


def test_volume_files_items_modes_and_missing():
    vols = [{"name": "a", "configMap": {"name": "c", "defaultMode": 0o640,
                                        "items": [{"key": "GREETING", "path": "d/g.txt"}, {"key": "bin", "path": "b", "mode": 0o600}]}},
            {"name": "b", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "c", "configMap": {"name": "c", "items": [{"key": "zz", "path": "zz"}]}},
            {"name": "d", "secret": {"secretName": "gone", "optional": True}}]
    pod = _pod(volumes=vols)
    v = pod.spec.volumes
    cfg = _config()
    a = volume_files(v[0], "default", cfg)
    assert a.files == (("d/g.txt", 0o640, b"hi"), ("b", 0o600, b"\x00\x01")) and not a.secret
    b = volume_files(v[1], "default", cfg)
    assert b.secret and b.files == (("password", 0o400, SECRET_VALUE.encode()),) and SECRET_VALUE not in repr(b)
    with pytest.raises(ConfigError, match="configmap references non-existent config key: zz"):
        volume_files(v[2], "default", cfg)
    assert volume_files(v[3], "default", cfg).files == ()


def test_env_digest_changes_with_the_config_it_reads_only():
    pod = _pod(env=[{"name": "G", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "GREETING"}}}])
    c = pod.spec.containers[0]
    before = env_config_digest(c, "default", _config())
    changed = {**_config(), ("ConfigMap", "default", "c"): config_data(parse_object(cm({"GREETING": "yo"})), None)}
    other = {**_config(), ("Secret", "default", "s"): config_data(parse_object(secret(stringData={"x": "y"})), b"k")}
    assert before and env_config_digest(c, "default", changed) != before
    assert env_config_digest(c, "default", other) == before
    assert env_config_digest(_pod().spec.containers[0], "default", _config()) == ""  # no refs: hash as before
    dep = {"metadata": {"namespace": "default"}, "spec": {"template": {"spec": to_k8s(pod)["spec"]}}}
    assert template_config_inputs(dep, _config()) != template_config_inputs(dep, changed)
    plain = {"metadata": {}, "spec": {"template": {"spec": to_k8s(_pod())["spec"]}}}
    assert template_config_inputs(plain, changed) == []


def test_affected_names_readers_and_how():
    pod = _pod(env=[{"name": "G", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "GREETING"}}}],
               volumes=[{"name": "v", "secret": {"secretName": "s"}}])
    lines = affected([("ConfigMap", "default", "c"), ("Secret", "default", "s")],
                     [("Pod", "default", "p", pod.spec), ("Deployment", "default", "web", pod.spec),
                      ("Pod", "other", "p", pod.spec)])
    assert lines == [
        "~ ConfigMap default/c changed: affects Pod default/p (env reads it: containers recreated)",
        "~ ConfigMap default/c changed: affects Deployment default/web (env reads it: pods rolled out)",
        "~ Secret default/s changed: affects Pod default/p (mounted: files updated in place)",
        "~ Secret default/s changed: affects Deployment default/web (mounted: files updated in place)",
    ]
