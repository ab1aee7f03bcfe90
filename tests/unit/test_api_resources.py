"""The resource table: every kind gitkube knows is served, named and printable, from one line each."""
from __future__ import annotations

import pytest

from gitkube.api import KINDS, NAMESPACED
from gitkube.api import resources as res
from gitkube.api.printers import object_name, resolve_resource, table_rows


def test_every_model_kind_has_its_resource_line():
    assert set(KINDS) <= set(res.BY_KIND), f"add a line to gitkube/api/resources.py for {set(KINDS) - set(res.BY_KIND)}"
    for kind in KINDS:
        assert res.BY_KIND[kind].namespaced == (kind in NAMESPACED), kind


@pytest.mark.parametrize("r", res.RESOURCES, ids=lambda r: r.kind)
def test_each_resource_resolves_by_every_name_and_prints(r):
    for name in (r.plural, r.singular, *r.short_names, r.plural.upper()):
        assert resolve_resource(name) == (r.kind, r.namespaced)
    headers, rows = table_rows(r.kind, [])
    assert headers and rows == []
    assert object_name({"kind": r.kind, "metadata": {"name": "x"}}) == f"{r.qualified_name}/x"


def test_unknown_resource_says_so_in_kubectl_words():
    with pytest.raises(KeyError) as e:
        res.resolve("widgets")
    assert e.value.args[0] == 'the server doesn\'t have a resource type "widgets"'


def test_all_is_pods_rcs_and_services_in_order():
    assert [r.plural for r in res.in_category("all")][:3] == ["pods", "replicationcontrollers", "services"]
    assert res.group_versions()[0] == ("", "v1")
