"""Label selectors as `kubectl -l` takes them: equality (`a=b`, `a!=b`) and set-based (`a in (x,y)`, `!a`)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gitkube.api.names import label_value, qualified_name

# Token boundaries are the characters Kubernetes' selector lexer treats as special.
_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|!|\(|\)|,|<|>)|(?P<word>[^\s=!(),<>]+))")

_OPS = ("=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt")


@dataclass(frozen=True)
class Requirement:
    """One clause of a selector: a key, an operator and its values."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Decides whether this clause holds for a set of labels."""
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return labels.get(self.key) not in self.values
        have = labels.get(self.key)
        try:
            have_n, want_n = int(have), int(self.values[0])  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return have_n > want_n if op == "gt" else have_n < want_n

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        sym = {"gt": ">", "lt": "<"}.get(self.op, self.op)
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Decides whether every requirement holds for `labels`."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """Decides whether this selector selects everything."""
        return not self.requirements

    @classmethod
    def from_dict(cls, d: Mapping[str, str] | None) -> "Selector":
        """Builds the equality selector of a `selector:` map (RC and Service selectors)."""
        return cls(tuple(Requirement(k, "=", (v,)) for k, v in sorted((d or {}).items())))

    def __str__(self) -> str:
        return ",".join(map(str, self.requirements))


def _check_key(key: str, text: str) -> None:
    errs = qualified_name(key)
    if errs:
        raise ValueError(f'invalid label selector "{text}": key "{key}": {"; ".join(errs)}')


def _check_value(value: str, text: str) -> None:
    errs = label_value(value)
    if errs:
        raise ValueError(f'invalid label selector "{text}": value "{value}": {"; ".join(errs)}')


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f'invalid label selector "{text}": unexpected character at position {pos}')
        if m.group("op"):
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
        pos = m.end()
    return out


def parse_selector(text: str) -> Selector:
    """Decides what a `-l` selector string means; raises ValueError with the reason when it is malformed.
    Over 60 lines: one recursive-descent parser of kubectl's selector grammar, each operator's case next to the
    others so the grammar reads in one place."""
    toks = _tokens(text or "")
    reqs: list[Requirement] = []
    i, n = 0, len(toks)

    def fail(why: str) -> ValueError:
        return ValueError(f'invalid label selector "{text}": {why}')

    while i < n:
        kind, tok = toks[i]
        if kind == "op" and tok == "!":
            if i + 1 >= n or toks[i + 1][0] != "word":
                raise fail("'!' must be followed by a key")
            key = toks[i + 1][1]
            _check_key(key, text)
            reqs.append(Requirement(key, "!"))
            i += 2
        elif kind == "word":
            key = tok
            _check_key(key, text)
            i += 1
            if i >= n or toks[i] == ("op", ","):
                reqs.append(Requirement(key, "exists"))
            else:
                kind2, op = toks[i]
                if kind2 == "op" and op in ("=", "==", "!=", "<", ">"):
                    i += 1
                    # `a=` selects the empty value, as Kubernetes allows
                    value = ""
                    if i < n and toks[i][0] == "word":
                        value = toks[i][1]
                        i += 1
                    elif op in ("<", ">"):
                        raise fail(f"operator '{op}' needs an integer value")
                    if op in ("<", ">"):
                        try:
                            int(value)
                        except ValueError:
                            raise fail(f"operator '{op}' needs an integer value, not \"{value}\"") from None
                    else:
                        _check_value(value, text)
                    norm = {"==": "=", "<": "lt", ">": "gt"}.get(op, op)
                    reqs.append(Requirement(key, norm, (value,)))
                elif kind2 == "word" and op in ("in", "notin"):
                    i += 1
                    if i >= n or toks[i] != ("op", "("):
                        raise fail(f"'{op}' must be followed by '('")
                    i += 1
                    values: list[str] = []
                    expect_value = True
                    while True:
                        if i >= n:
                            raise fail("missing ')'")
                        k3, t3 = toks[i]
                        if (k3, t3) == ("op", ")"):
                            if expect_value and values:
                                raise fail("empty value in set")
                            i += 1
                            break
                        if (k3, t3) == ("op", ","):
                            if expect_value:
                                values.append("")  # `in (a,,b)` has an empty value, as in Kubernetes
                            expect_value = True
                            i += 1
                            continue
                        if k3 != "word" or not expect_value:
                            raise fail(f"unexpected '{t3}' in value set")
                        _check_value(t3, text)
                        values.append(t3)
                        expect_value = False
                        i += 1
                    if not values:
                        raise fail(f"'{op}' needs at least one value")
                    reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
                else:
                    raise fail(f"unexpected '{op}' after key \"{key}\"")
        else:
            raise fail(f"unexpected '{tok}'")
        if i < n:
            if toks[i] != ("op", ","):
                raise fail(f"expected ',' but found '{toks[i][1]}'")
            i += 1
            if i >= n:
                raise fail("trailing ','")
    return Selector(tuple(reqs))
