"""Bad input at scale: the valid example manifests, mutated (fields dropped, retyped, renamed, nested or duplicated,
random bytes put in), through the loader and validator. Every case ends in valid objects or in problems that each
name `file:line`, never in an exception. A short run here; bench/bench_property_manifests.py runs thousands."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitkube.source.loader import load_files

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests").rglob("*.yaml"))
DOCS = [(p.name, d) for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict)]
LOCATED = re.compile(r"^[^:]+\.(yaml|json):\d+: ")
CASES = {"valid": 0, "refused": 0}  # counted for the bench

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.text(max_size=12), st.just("0x1F"), st.just("1e3"), st.just("100Mi"), st.just("~"))


def _paths(value, prefix=()):
    """Every path to a value inside nested dicts and lists."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw):
    """A (file name, bytes) pair: an example manifest with up to 4 mutations, as YAML or JSON, maybe with bytes
    put in."""
    name, doc = draw(st.sampled_from(DOCS))
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path), path[-1]
        op = draw(st.sampled_from(["drop", "retype", "rename", "nest", "duplicate"]))
        if op == "drop":
            del parent[key]
        elif op == "retype":
            parent[key] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                                         st.dictionaries(st.text(max_size=6), SCALARS, max_size=3)))
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(key)
        elif op == "nest":
            parent[key] = draw(st.sampled_from([{"value": parent[key]}, [parent[key]], {"a": {"b": [parent[key]]}}]))
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[key])))
        elif op == "duplicate" and isinstance(parent, dict):
            parent[f"{key}"] = json.loads(json.dumps(parent[key]))  # the same key: made a real duplicate below
    as_json = draw(st.booleans())
    text = json.dumps(doc, indent=1) if as_json else yaml.safe_dump(doc, sort_keys=False)
    if not as_json and draw(st.booleans()):
        lines = text.splitlines(keepends=True)
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        text = "".join(lines[: i + 1] + lines[i:])  # a line written twice: duplicate keys, repeated items
    data = text.encode()
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return (f"{Path(name).stem}.{'json' if as_json else 'yaml'}", data)


def check(case) -> str:
    """Loads one case; returns "valid" or "refused", failing on an exception or an unlocated problem."""
    name, data = case
    loaded = load_files([(name, data)])
    if not loaded.problems:
        assert loaded.objects, "no problem and no object"
        return "valid"
    for p in loaded.problems:
        assert LOCATED.match(str(p)), f"problem without file:line: {p}"
    return "refused"


@settings(max_examples=int(os.environ.get("GITKUBE_PBT_EXAMPLES", "300")), deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_manifests_end_in_objects_or_located_problems(case):
    CASES[check(case)] += 1


def test_the_examples_themselves_are_valid():
    for p in EXAMPLES:
        assert check((p.name, p.read_bytes())) == "valid", p
