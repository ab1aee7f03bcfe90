"""--store URLs: which store and where (no etcd needed)."""
from __future__ import annotations

import pytest

from gitkube.store import Store, open_store
from gitkube.store.etcd import parse_url


def test_etcd_urls_name_endpoints_and_an_optional_prefix():
    assert parse_url("etcd://127.0.0.1:2379") == (["127.0.0.1:2379"], "/gitkube/")
    assert parse_url("etcd://a:1,b:2, c:3/team/x/") == (["a:1", "b:2", "c:3"], "/team/x/")
    for bad in ("etcd://", "etcd://host", "etcd://host:port", "http://a:1", "etcd://:2379"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_sqlite_is_the_default_and_can_be_named(tmp_path):
    with open_store(str(tmp_path / "a"), writer=True) as st:
        assert isinstance(st, Store) and st.state_dir == str(tmp_path / "a")
    with open_store(str(tmp_path / "a"), writer=True, url=f"sqlite://{tmp_path / 'b'}") as st:
        assert st.state_dir == str(tmp_path / "b")
    with pytest.raises(ValueError, match="want sqlite://DIR or etcd://"):
        open_store(str(tmp_path), url="redis://x:1")


def test_the_etcd_store_has_every_method_of_the_sqlite_store():
    """The controller and the API take either store: a method added to one must be added to the other."""
    import inspect

    from gitkube.store.etcd import EtcdStore

    for name, fn in inspect.getmembers(Store, callable):
        if name.startswith("_") or name == "open":
            continue
        other = getattr(EtcdStore, name, None)
        assert other is not None, f"EtcdStore lacks {name}()"
        assert list(inspect.signature(fn).parameters) == list(inspect.signature(other).parameters), name
