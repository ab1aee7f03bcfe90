"""One top-level handler: expected failures are one `error: …` line and exit 2; a bug writes a crash report."""
from __future__ import annotations

import json
import sqlite3

import pytest

from _gitrepo import commit_files
import gitkube.cli.run_cmds as run_cmds
from gitkube.api.errors import InvalidInput, Problem
from gitkube.cli import EXIT_CRASH, main


def _raise(exc):
    def func(args):
        raise exc
    return func


@pytest.mark.parametrize("exc,words", [
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (sqlite3.DatabaseError("database disk image is malformed"), "state DB: database disk image is malformed"),
    (json.JSONDecodeError("Expecting value", "x", 0), "unreadable data"),
    (InvalidInput([Problem("inventory.yaml", None, "", "file not found")], "inventory"), "inventory.yaml"),
    (FileNotFoundError(2, "No such file or directory", "inventory.yaml"), "inventory.yaml: No such file"),
])
def test_expected_failures_are_one_error_and_exit_2(monkeypatch, tmp_path, capsys, exc, words):
    monkeypatch.setattr(run_cmds, "cmd_logs", _raise(exc))
    assert main(["--state-dir", str(tmp_path), "logs", "p"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert not list(tmp_path.glob("crash-*"))


def test_unexpected_failure_writes_a_crash_report(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(run_cmds, "cmd_logs", _raise(ZeroDivisionError("boom")))
    assert main(["--state-dir", str(tmp_path), "logs", "p"]) == EXIT_CRASH
    err = capsys.readouterr().err
    (report,) = tmp_path.glob("crash-*.txt")
    assert str(report) in err and "Traceback" not in err and "error: unexpected ZeroDivisionError: boom" in err
    assert "ZeroDivisionError: boom" in report.read_text() and "Traceback" in report.read_text()


def test_deep_json_is_a_located_problem_not_a_traceback(tmp_path, capsys):
    repo = tmp_path / "repo"
    commit_files(str(repo), {"manifests/deep.json": '{"apiVersion": "v1",\n"kind": ' + "[" * 10000 + "]" * 10000 + "}"})
    assert main(["--state-dir", str(tmp_path / "st"), "validate", "--repo", str(repo)]) == 1
    err = capsys.readouterr()
    assert "manifests/deep.json:2: <document>: nested more than 100 levels deep" in err.out + err.err


def test_logs_without_inventory_is_an_error_line(tmp_path, capsys, monkeypatch):
    from gitkube.store import Store

    with Store.open(tmp_path / "st", writer=True) as s:
        s.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})
    monkeypatch.chdir(tmp_path)
    assert main(["--state-dir", str(tmp_path / "st"), "logs", "p"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "inventory.yaml" in err and "Traceback" not in err
