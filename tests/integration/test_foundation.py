"""Foundation on a real 3-node sandbox: nodes probed over SSH+Docker, pinned host keys, faults, clean teardown."""
import os
import subprocess
from pathlib import Path

import yaml

from tests.integration.conftest import SID, eventually, gk, gk_json


def ready_of(items, name):
    node = next(i for i in items if i["metadata"]["name"] == name)
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def test_get_nodes_json_shows_ready_nodes_with_capacity_and_info(fleet):
    out = gk_json("get", "nodes", "--inventory", str(fleet.inventory), state_dir=fleet.state_dir)
    assert out["apiVersion"] == "v1" and out["kind"] == "List"
    items = out["items"]
    assert sorted(i["metadata"]["name"] for i in items) == ["n1", "n2", "n3"]
    for n in items:
        assert n["kind"] == "Node"
        ready = ready_of(items, n["metadata"]["name"])
        assert ready["status"] == "True", ready
        assert ready["lastHeartbeatTime"]
        st = n["status"]
        assert int(st["capacity"]["cpu"]) >= 1 and st["capacity"]["memory"].endswith("Ki") and st["capacity"]["pods"] == "110"
        assert st["allocatable"]["cpu"] == st["capacity"]["cpu"]
        assert st["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
        assert st["nodeInfo"]["kernelVersion"] == os.uname().release
        assert {"type": "InternalIP", "address": fleet.node_address(n["metadata"]["name"])} in st["addresses"]


def test_changed_host_key_is_refused(fleet, tmp_path):
    inv = yaml.safe_load(fleet.inventory.read_text())
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kh = inv["defaults"].pop("knownHostsFile")
    inv["nodes"][0]["hostKeys"] = [" ".join(Path(f"{other}.pub").read_text().split()[:2])]
    for n in inv["nodes"][1:]:
        n["knownHostsFile"] = kh
    bad = tmp_path / "inventory.yaml"
    bad.write_text(yaml.safe_dump(inv))
    items = gk_json("get", "nodes", "--inventory", str(bad), state_dir=tmp_path / "st")["items"]
    r1 = ready_of(items, "n1")
    assert r1["status"] == "False" and r1["reason"] == "HostKeyMismatch", r1
    assert "host key mismatch" in r1["message"] and "pin" in r1["message"]
    assert ready_of(items, "n2")["status"] == "True"


def test_cut_node_goes_not_ready_and_heals(fleet):
    args = ("get", "nodes", "--inventory", str(fleet.inventory))
    gk("sandbox", "node", "n2", "cut", state_dir=fleet.state_dir)
    try:
        def n2_not_ready():
            items = gk_json(*args, state_dir=fleet.state_dir, timeout=30)["items"]
            return items if ready_of(items, "n2")["status"] != "True" else None

        items = eventually(n2_not_ready, timeout=15, interval=0.5, what="n2 NotReady")
        assert ready_of(items, "n1")["status"] == "True" and ready_of(items, "n3")["status"] == "True"
    finally:
        gk("sandbox", "node", "n2", "heal", state_dir=fleet.state_dir)
    eventually(lambda: ready_of(gk_json(*args, state_dir=fleet.state_dir)["items"], "n2")["status"] == "True",
               timeout=30, what="n2 Ready again")


def test_sandbox_down_leaves_nothing_behind(tmp_path):
    sid = (SID + 1) % 10
    env = {"GITKUBE_SANDBOX_ID": str(sid)}
    gk("sandbox", "up", "--nodes", "1", "--no-images", state_dir=tmp_path, env=env)
    assert Path(f"/var/run/netns/gk{sid}-n1").exists()
    gk("sandbox", "down", state_dir=tmp_path, env=env)
    assert not Path(f"/var/run/netns/gk{sid}-n1").exists()
    assert not Path(f"/sys/class/net/gk{sid}br").exists() and not Path(f"/sys/class/net/gk{sid}n1h").exists()
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"/gk{sid}/n1/" not in procs
    assert f"gk{sid}br" not in subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert f"198.18.{100 + 10 * sid + 1}.0/24" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert not Path(f"/var/lib/gitkube/sandbox/gk{sid}").exists()
