"""Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1G`, `1e3`), parsed exactly as decimals."""
from __future__ import annotations

import functools
import re
from decimal import ROUND_CEILING, Decimal, localcontext

# Grammar of k8s.io/apimachinery resource.Quantity: a signed decimal number and an optional suffix
# (binary SI, decimal SI or a decimal exponent). The exponent alternative comes first so that `1e3`
# is read as 1000 and not as a malformed `E` (exa) suffix.
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)

_MULTIPLIER: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
}

# Enough digits that no quantity Kubernetes can represent (±2^63 with nano precision) is rounded.
_PRECISION = 60


def parse_quantity(text: str | int | float | Decimal) -> Decimal:
    """Decides the exact value of a Kubernetes quantity; raises ValueError for anything Kubernetes refuses."""
    if isinstance(text, bool):
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}'")
    if isinstance(text, Decimal):
        return text
    if isinstance(text, (int, float)):
        text = repr(text) if isinstance(text, float) else str(text)
    if not isinstance(text, str):
        raise ValueError("a quantity must be a string or a number")
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Decimal:
    # Every pass reads the same few requests and capacities (Decimal is immutable, so a cached value is safe).
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f'invalid quantity "{text}": must be a number with an optional suffix '
                         "(n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>)")
    num, suffix = m.group("num"), m.group("suffix") or ""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        value = Decimal(num)
        if suffix[:1] in ("e", "E") and len(suffix) > 1:
            exp = int(suffix[1:])
            if abs(exp) > 30:  # Kubernetes' own parser refuses such magnitudes too
                raise ValueError(f'invalid quantity "{text}": exponent out of range')
            return value.scaleb(exp)
        return value * _MULTIPLIER[suffix]


def _ceil(value: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return int(value.to_integral_value(rounding=ROUND_CEILING))


def cpu_millis(text: str | int | float | Decimal) -> int:
    """Decides how many millicores a CPU quantity is, rounding a fraction of a millicore up as Kubernetes does."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _ceil(parse_quantity(text) * 1000)


def memory_bytes(text: str | int | float | Decimal) -> int:
    """Decides how many bytes a memory quantity is, rounding a fraction of a byte up as Kubernetes does."""
    return _ceil(parse_quantity(text))
