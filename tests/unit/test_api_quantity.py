"""Quantities are exact and refuse what Kubernetes refuses."""
from decimal import Decimal

import pytest

from gitkube.api.quantity import cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize("text,value", [
    ("100m", Decimal("0.1")), ("0.5", Decimal("0.5")), ("1", Decimal(1)), ("128Mi", Decimal(128 * 1024**2)),
    ("1G", Decimal(10**9)), ("1e3", Decimal(1000)), ("1E3", Decimal(1000)), ("1E", Decimal(10**18)),
    ("2Ki", Decimal(2048)), (".5", Decimal("0.5")), ("+1", Decimal(1)), ("-1", Decimal(-1)), ("1.5Gi", Decimal(1610612736)),
    ("5n", Decimal("5e-9")), ("3u", Decimal("3e-6")), ("1k", Decimal(1000)), ("1e-3", Decimal("0.001")),
    (2, Decimal(2)), (0.25, Decimal("0.25")),
])
def test_parse_quantity_is_exact(text, value) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "m", "1x", "1.2.3", "1 Mi", "Mi1", "1mi", "1KiB", "0x10", "1e", "abc", "1e99", True])
def test_parse_quantity_refuses_garbage(text) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_cpu_millis_rounds_up() -> None:
    assert cpu_millis("100m") == 100
    assert cpu_millis("0.5") == 500
    assert cpu_millis("2") == 2000
    assert cpu_millis("1500u") == 2  # 1.5 millicores round up, as Kubernetes does
    assert cpu_millis("0.0001") == 1


def test_memory_bytes_rounds_up() -> None:
    assert memory_bytes("128Mi") == 134217728
    assert memory_bytes("1G") == 10**9
    assert memory_bytes("1e3") == 1000
    assert memory_bytes("1500m") == 2
    assert memory_bytes("0.1") == 1
