"""Server-side printing: a meta.k8s.io/v1 Table of the same columns and cells `gitkube get` prints, so plain
`kubectl get` looks as it does against Kubernetes (kubectl adds NAMESPACE and LABELS itself from the row objects)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from gitkube.api import printers

TABLE_MIME = "as=Table"

DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace. Cannot be updated.",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was created.",
}


def wants_table(accept: str | None) -> bool:
    """Decides whether a request's Accept header asks for a Table (kubectl's default for `get`)."""
    return bool(accept) and any(TABLE_MIME in part and "meta.k8s.io" in part for part in accept.split(","))


def column_name(header: str) -> str:
    """kubectl's column names as the API server spells them: Name, Cluster-IP, Port(s), Last Seen."""
    def word(w: str) -> str:
        return w if w in ("IP", "IPS") else w.capitalize()

    return " ".join("-".join(word(p) for p in w.split("-")) for w in header.split(" "))


def columns(kind: str) -> list[dict]:
    """The column definitions of a kind: the narrow columns priority 0, the -o wide ones priority 1."""
    narrow, _ = printers.table_rows(kind, [])
    wide, _ = printers.table_rows(kind, [], wide=True)
    out = []
    for h in wide:
        name = column_name(h)
        out.append({"name": name, "type": "string", "format": "name" if name == "Name" else "",
                    "description": DESCRIPTIONS.get(name, name), "priority": 0 if h in narrow else 1})
    return out


def row_object(obj: Mapping, include: str) -> dict | None:
    """What a row carries: the object's metadata (default), the whole object, or nothing."""
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(kind: str, objects: Sequence[Mapping], resource_version: str | int, include: str = "Metadata",
          now: datetime | None = None) -> dict:
    """Decides the Table for a list of (served) objects of one kind."""
    now = now or datetime.now(timezone.utc)
    _, rows = printers.table_rows(kind, objects, wide=True, now=now)
    out_rows = []
    for obj, cells in zip(objects, rows):
        row: dict = {"cells": list(cells)}
        ro = row_object(obj, include)
        if ro is not None:
            row["object"] = ro
        out_rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(resource_version)},
            "columnDefinitions": columns(kind), "rows": out_rows}
