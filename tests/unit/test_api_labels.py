"""Label selectors mean what `kubectl -l` means."""
import pytest

from gitkube.api.labels import Selector, parse_selector

LABELS = {"app": "web", "tier": "front", "version": "3"}


@pytest.mark.parametrize("text,matches", [
    ("", True), ("app=web", True), ("app==web", True), ("app!=web", False), ("app=db", False),
    ("missing!=x", True), ("app in (web,db)", True), ("app in (db)", False), ("app notin (db, cache)", True),
    ("missing notin (x)", True), ("app", True), ("missing", False), ("!missing", True), ("!app", False),
    ("app=web,tier=front", True), ("app=web, tier=back", False), ("version>2", True), ("version<2", False),
    ("  app = web  ", True), ("app in (web),tier", True), ("missing in (x)", False), ("app=", False),
])
def test_selector_matches_like_kubectl(text, matches) -> None:
    assert parse_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize("text", [
    "app=web=x", "in (a)", "app in web", "app in (web", "!", "app,", ",app", "app=web tier", "app in ()",
    "Bad Key=x", "app=bad value!", "-app=x", "app>x", "app=" + "v" * 64,
])
def test_malformed_selectors_raise_with_a_reason(text) -> None:
    with pytest.raises(ValueError, match="invalid label selector"):
        parse_selector(text)


def test_from_dict_is_an_equality_selector() -> None:
    sel = Selector.from_dict({"app": "web", "tier": "front"})
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web"})
    assert str(sel) == "app=web,tier=front"
    assert Selector.from_dict({}).matches({})  # the empty selector selects everything
    assert parse_selector(str(parse_selector("a in (y,x),!b,c!=d"))) == parse_selector("a in (x,y),!b,c!=d")


def test_prefixed_keys() -> None:
    assert parse_selector("app.kubernetes.io/name=web").matches({"app.kubernetes.io/name": "web"})
