"""ConfigMaps and age-encrypted Secrets end to end on the sandbox, through the CLI as an operator would use it:
env and files in a pod, the secret volume on tmpfs, a ConfigMap change reaching the mounted file without a
restart, interop with Debian's `age`, refusals that leave running pods alone, and the secret value found nowhere
it must not be (the state DB, the controller's log, events, diff/describe/get output, Docker labels)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import eventually

IMAGE = "gitkube/busybox:latest"
pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed (scripts/setup.sh)")


class Repo:
    """A Git repository of manifests, an age key made by `age-keygen`, and gitkube's state dir."""

    def __init__(self, fleet, root: Path):
        self.fleet, self.root = fleet, root
        self.repo, self.state = root / "repo", root / "state"
        self.key, self.other_key = root / "key.txt", root / "other-key.txt"
        (self.repo / "manifests").mkdir(parents=True)
        for k in (self.key, self.other_key):
            subprocess.run(["age-keygen", "-o", str(k)], check=True, capture_output=True)
        self.recipient = subprocess.run(["age-keygen", "-y", str(self.key)], check=True, capture_output=True,
                                        text=True).stdout.strip()
        self.log: list[str] = []  # everything gitkube printed: the controller's log included
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> None:
        subprocess.run(["git", "-C", str(self.repo), "-c", "user.name=e2e", "-c", "user.email=e2e@gitkube.test", *args],
                       check=True, capture_output=True, text=True)

    def write(self, name: str, docs: list | None) -> None:
        p = self.repo / "manifests" / name
        if docs is None:
            p.unlink(missing_ok=True)
        else:
            p.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def age_encrypt(self, name: str, doc: dict) -> None:
        """Encrypt a manifest with the Debian `age` CLI (armored), as a user without gitkube would."""
        out = self.repo / "manifests" / name
        subprocess.run(["age", "-r", self.recipient, "-a", "-o", str(out)], input=yaml.safe_dump(doc).encode(),
                       check=True, capture_output=True)

    def commit(self, message: str) -> None:
        self.git("add", "-A", "manifests")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def gk(self, *args: str, check: bool = True, timeout: float = 120, logged: bool = True):
        r = self.fleet.gk("-v", *args, state_dir=self.state, check=check, timeout=timeout)
        if logged:  # exec's output is the container's, which holds the values on purpose
            self.log += [r.stdout, r.stderr]
        return r

    def src(self, key: Path | None = None) -> list[str]:
        return ["--repo", str(self.repo), "--inventory", str(self.fleet.inventory), "--age-identity", str(key or self.key)]

    def apply(self, *extra: str, key: Path | None = None, check: bool = True, timeout: float = 150):
        # A fresh process on a machine loaded by other runs may need longer than 6 s to reach a node.
        return self.gk("apply", *self.src(key), "--heartbeat-timeout", "30", *extra, check=check, timeout=timeout)

    def converge(self, check, what: str, timeout: float = 90):
        """Apply until `check()` holds: a pass skips a node whose heartbeat timed out on a loaded machine."""
        last = []

        def attempt():
            last[:] = [self.apply(check=False).stderr[-3000:]]  # exit 1 also names a node it could not reach
            return check()
        try:
            return eventually(attempt, timeout, interval=0.2, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nlast apply said:\n{last[0] if last else ''}") from None

    def pod(self, name: str) -> dict:
        return json.loads(self.gk("get", "pods", name, "-o", "json").stdout)

    def try_exec(self, pod: str, *cmd: str) -> str | None:
        """Run a command in the pod's container through the node's own Docker engine (the test's view, as
        `docker exec` would); None when it fails (the container is being replaced, or the engine is slow)."""
        p = self.pod(pod)
        cid = (p["status"].get("containerStatuses") or [{}])[0].get("containerID", "").removeprefix("docker://")
        if not cid:
            return None
        r = self.fleet.docker(p["spec"]["nodeName"], "exec", cid, *cmd, timeout=120)
        return r.stdout if r.returncode == 0 else None

    def cli_exec(self, pod: str, *cmd: str) -> str:
        """`gitkube exec` (over SSH); exit 2 is the node's engine not answering in time on a loaded machine."""
        for _ in range(5):
            r = self.gk("exec", pod, "--inventory", str(self.fleet.inventory), "--", *cmd, logged=False, check=False)
            if r.returncode != 2:
                break
        assert r.returncode == 0, f"gitkube exec {cmd} exited {r.returncode}: {r.stderr[-2000:]}"
        return r.stdout

    def exec(self, pod: str, *cmd: str) -> str:
        out = self.try_exec(pod, *cmd)
        assert out is not None, f"exec {cmd} in {pod} failed"
        return out

    def container(self, pod: str) -> tuple[str, int]:
        cs = self.pod(pod)["status"]["containerStatuses"][0]
        return cs.get("containerID", ""), cs["restartCount"]


class ArgvWatch:
    """Samples every process's command line on this host (the controller, ssh, dockerd, the nodes' containers)
    while gitkube works, and keeps any that holds one of `values`."""

    def __init__(self, values: list[str]):
        self.values, self.found, self.samples = values, [], 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05) and self.samples < 20_000:
            self.samples += 1
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = f.read().decode("utf-8", "replace")
                except OSError:
                    continue
                if any(v in argv for v in self.values):
                    self.found.append(argv.replace("\0", " "))

    def stop(self) -> list[str]:
        self._stop.set()
        self._t.join(10)
        return self.found


def config_pod(name: str = "cfg-pod", env_key: str = "GREETING") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
            "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-env", "key": env_key}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                    {"name": "NOPE", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}}}],
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "app-env"}}],
            "volumeMounts": [{"name": "files", "mountPath": "/etc/config"},
                             {"name": "secret", "mountPath": "/etc/secret"}]}],
        "volumes": [{"name": "files", "configMap": {"name": "app-files", "defaultMode": 0o640,
                                                     "items": [{"key": "app.properties", "path": "conf/app.properties"},
                                                               {"key": "motd", "path": "motd", "mode": 0o600}]}},
                    {"name": "secret", "secret": {"secretName": "app-secret", "defaultMode": 0o400}}]}}


def configmap(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(password: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"}, "type": "kubernetes.io/basic-auth",
            "stringData": {"username": "admin", "password": password}}


@pytest.fixture
def repo(fleet, tmp_path):
    """The scenario's repository; afterwards its pods are removed through Git, as an operator would, because the
    modules after this one share the sandbox and count every gitkube container on it."""
    r = Repo(fleet, tmp_path)
    yield r
    for f in (r.repo / "manifests").iterdir():
        f.unlink()
    (r.repo / "manifests" / "README.md").write_text("nothing to run\n")  # the manifests path must still exist
    r.commit("remove everything")
    r.converge(lambda: not json.loads(r.gk("get", "pods", "-o", "json").stdout)["items"], "every pod removed")


def etcd_values(url: str) -> bytes:
    """Every value stored under an etcd store's prefix (what etcd keeps on its disks)."""
    from gitkube.store.etcd import gateway, parse_url

    endpoints, prefix = parse_url(url)
    r = gateway(endpoints).range(prefix, prefix=True)
    return b"".join(base64.b64decode(kv.get("value", "")) for kv in r.get("kvs") or [])


def test_config_and_secrets_end_to_end(fleet, repo):
    """One scenario, in order (longer than 60 lines on purpose): each step starts from what the previous one left
    running (the refusals must leave the pod with the rotated Secret as it is; the final search covers every value
    the scenario used), and separate tests would repeat the pod's setup on a loaded machine."""
    r = repo
    password = f"pw-{uuid.uuid4().hex}"
    r.write("app.yaml", [configmap("app-env", {"GREETING": "hello", "MODE": "prod"}),
                         configmap("app-files", {"app.properties": "color=blue\n", "motd": "welcome\n"}),
                         config_pod()])
    r.age_encrypt("app-secret.yaml.age", secret(password))  # written by the age CLI, read by gitkube
    r.commit("config, an age-encrypted secret and a pod that reads both")
    assert "1 Secret" in r.gk("validate", *r.src()[:2], "--age-identity", str(r.key)).stdout
    r.apply("--wait", "--timeout", "90")

    # env from a ConfigMap and the Secret, envFrom with its prefix; an optional missing Secret is left out
    env = dict(line.split("=", 1) for line in r.cli_exec("cfg-pod", "env").splitlines() if "=" in line)
    assert env["GREETING"] == "hello" and env["PASSWORD"] == password
    assert env["CFG_GREETING"] == "hello" and env["CFG_MODE"] == "prod" and "NOPE" not in env
    # files with the right contents and modes; items rename and nest keys
    assert r.exec("cfg-pod", "cat", "/etc/config/conf/app.properties") == "color=blue\n"
    assert r.exec("cfg-pod", "cat", "/etc/secret/password") == password
    modes = r.exec("cfg-pod", "stat", "-L", "-c", "%a %n", "/etc/config/conf/app.properties", "/etc/config/motd",
                   "/etc/secret/password", "/etc/secret/username").split("\n")
    assert modes[:4] == ["640 /etc/config/conf/app.properties", "600 /etc/config/motd", "400 /etc/secret/password",
                         "400 /etc/secret/username"], modes
    # the secret volume is tmpfs (memory only) and read-only, seen from inside the container
    mounts = {ln.split()[1]: ln.split() for ln in r.exec("cfg-pod", "cat", "/proc/mounts").splitlines()}
    assert mounts["/etc/secret"][2] == "tmpfs" and mounts["/etc/secret"][3].startswith("ro"), mounts["/etc/secret"]
    assert mounts["/etc/config"][3].startswith("ro"), mounts["/etc/config"]
    first = r.container("cfg-pod")

    # a ConfigMap change reaches the mounted file without a restart; diff names the pod it affects
    r.write("app.yaml", [configmap("app-env", {"GREETING": "hello", "MODE": "prod"}),
                         configmap("app-files", {"app.properties": "color=green\n", "motd": "welcome\n"}),
                         config_pod()])
    r.commit("green")
    d = r.gk("diff", *r.src(), "--heartbeat-timeout", "30", check=False)
    assert "~ ConfigMap default/app-files changed: affects Pod default/cfg-pod (mounted: files updated in place)" in d.stdout
    r.converge(lambda: r.try_exec("cfg-pod", "cat", "/etc/config/conf/app.properties") == "color=green\n",
               "the changed ConfigMap in the mounted file")
    assert r.container("cfg-pod") == first, "a mounted ConfigMap's change must not restart the container"

    # a rotated Secret: the volume file changes in place; env cannot, so the container is recreated
    password2 = f"pw-{uuid.uuid4().hex}"
    argv = ArgvWatch([password, password2])  # through rotation, refusals and the searches below
    out = r.root / "rotated.yaml"
    out.write_text(yaml.safe_dump(secret(password2)))
    r.gk("secret", "encrypt", str(out), "--recipient", r.recipient, "-o", str(r.repo / "manifests" / "app-secret.yaml.age"),
         "--force")
    dec = subprocess.run(["age", "-d", "-i", str(r.key), str(r.repo / "manifests" / "app-secret.yaml.age")],
                         capture_output=True, check=True)  # the age CLI reads what gitkube wrote
    assert yaml.safe_load(dec.stdout)["stringData"]["password"] == password2
    out.unlink()
    r.commit("rotate the password")
    d = r.gk("diff", *r.src(), "--heartbeat-timeout", "30", check=False)
    assert ("~ Secret default/app-secret changed: affects Pod default/cfg-pod (env reads it: containers recreated; "
            "mounted: files updated in place)") in d.stdout
    r.converge(lambda: r.container("cfg-pod")[0] != first[0], "the container recreated for its new env")
    r.apply("--wait", "--timeout", "60")
    assert r.exec("cfg-pod", "cat", "/etc/secret/password") == password2
    cid, restarts = r.container("cfg-pod")
    assert cid != first[0] and restarts == first[1] + 1
    assert f"PASSWORD={password2}" in r.exec("cfg-pod", "env")
    running = r.container("cfg-pod")

    # refusals: each names the file (and line) or the Kubernetes reason; the running pod stays as it is
    v = r.gk("validate", *r.src(r.other_key)[:2], "--age-identity", str(r.other_key), check=False)
    assert v.returncode == 1 and "manifests/app-secret.yaml.age: <document>: cannot be decrypted: no matching identity" in v.stdout
    a = r.apply(key=r.other_key, check=False)
    assert a.returncode == 1 and "app-secret.yaml.age" in a.stderr and "REFUSED" in a.stderr
    good = (r.repo / "manifests" / "app-secret.yaml.age").read_bytes()
    broken = bytearray(good)
    broken[len(broken) // 2] = ord("A") if broken[len(broken) // 2] != ord("A") else ord("B")
    (r.repo / "manifests" / "app-secret.yaml.age").write_bytes(bytes(broken))
    r.commit("a corrupted secret")
    a = r.apply(check=False)
    assert a.returncode == 1 and "manifests/app-secret.yaml.age: <document>: cannot be decrypted: " in a.stderr
    (r.repo / "manifests" / "app-secret.yaml.age").write_bytes(good)
    r.write("leak.yaml", [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak"},
                           "stringData": {"token": password}}])
    r.commit("a plain-text secret")
    v = r.gk("validate", *r.src()[:2], "--age-identity", str(r.key), check=False)
    assert v.returncode == 1 and "manifests/leak.yaml:2: kind: a Secret in plain text in Git is refused" in v.stdout
    assert password not in v.stdout + v.stderr
    a = r.apply(check=False)
    assert a.returncode == 1
    r.write("leak.yaml", None)
    # a missing key: the new pod waits with Kubernetes' reason and event; the running pod, whose env reads a key
    # that is now gone, keeps running with what it has
    r.write("app.yaml", [configmap("app-env", {"MODE": "prod"}),
                         configmap("app-files", {"app.properties": "color=green\n", "motd": "welcome\n"}),
                         config_pod(), config_pod("missing-key", env_key="NOT_THERE")])
    r.commit("a key goes missing")

    def waiting():
        st = r.pod("missing-key")["status"].get("containerStatuses") or [{}]
        return (st[0].get("state") or {}).get("waiting")
    w = r.converge(lambda: (x := waiting()) and x.get("reason") == "CreateContainerConfigError" and x,
                   "CreateContainerConfigError")
    assert w["message"] == "couldn't find key NOT_THERE in ConfigMap default/app-env"
    events = r.gk("events", "--for", "pod/missing-key").stdout
    assert "Error: couldn't find key NOT_THERE in ConfigMap default/app-env" in events and "Failed" in events
    assert r.container("cfg-pod") == running and r.pod("cfg-pod")["status"]["phase"] == "Running"
    assert r.exec("cfg-pod", "cat", "/etc/secret/password") == password2

    # the values are nowhere they must not be: state DB (and its WAL), log, events, outputs, Docker labels
    outputs = [r.gk("get", "secrets", "-o", "yaml").stdout, r.gk("get", "secret", "app-secret", "-o", "json").stdout,
               r.gk("describe", "secret", "app-secret").stdout, r.gk("describe", "pod", "cfg-pod").stdout,
               r.gk("get", "pods", "-o", "yaml").stdout, r.gk("events", "-A").stdout,
               r.gk("events", "-o", "yaml").stdout, r.gk("diff", *r.src(), "--heartbeat-timeout", "30", check=False).stdout]
    assert f"password:  {len(password2)} bytes" in outputs[2] and "username:  5 bytes" in outputs[2], outputs[2]
    db = b"".join(p.read_bytes() for p in r.state.glob("state.db*"))
    if os.environ.get("GITKUBE_STORE"):  # on etcd (GITKUBE_TEST_STORE=etcd) the state is every key under the prefix
        db += etcd_values(os.environ["GITKUBE_STORE"])
        assert b"app-secret" in db, "the etcd store's keys were not read"
    node = r.pod("cfg-pod")["spec"]["nodeName"]
    ids = fleet.docker(node, "ps", "-aq", "--filter", "label=io.gitkube.managed=true").stdout.split()
    inspect = json.loads(fleet.docker(node, "inspect", *ids).stdout)
    labels = json.dumps([c["Config"]["Labels"] for c in inspect])
    envs = json.dumps([c["Config"]["Env"] for c in inspect])
    for value in (password, password2):
        for form in (value, base64.b64encode(value.encode()).decode()):
            assert form.encode() not in db, "a secret value is in the state DB"
            assert form not in "\n".join(r.log), "a secret value is in gitkube's output or log"
            assert not any(form in o for o in outputs)
            assert form not in labels
    assert password2 in envs  # the documented exception: Docker keeps env in the container's config
    assert argv.stop() == [] and argv.samples > 10, "a secret value was on a process's command line"
