"""Which resources gitkube serves, one line per kind: the table behind `gitkube get`'s kind names and the API
server's discovery (/api/v1, /apis/GROUP/VERSION), so a new kind appears everywhere by adding its line here."""
from __future__ import annotations

from dataclasses import dataclass

READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Resource:
    """One kind as the Kubernetes API names it (APIResource in discovery)."""

    kind: str
    plural: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    group: str = ""  # "" is the core (legacy) group served under /api
    version: str = "v1"
    categories: tuple[str, ...] = ()  # "all": part of `kubectl get all`
    verbs: tuple[str, ...] = READ_VERBS

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        """apiVersion of its objects: v1, apps/v1."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return self.group, self.version

    @property
    def qualified_name(self) -> str:
        """kubectl's `-o name` prefix: pod, deployment.apps."""
        return f"{self.singular}.{self.group}" if self.group else self.singular


# Add a kind here (and its model in gitkube.api.models; rows in gitkube.api.printers.table_rows).
RESOURCES: tuple[Resource, ...] = (
    Resource("Pod", "pods", ("po",), categories=("all",)),
    Resource("ReplicationController", "replicationcontrollers", ("rc",), categories=("all",)),
    Resource("Service", "services", ("svc",), categories=("all",)),
    Resource("Deployment", "deployments", ("deploy",), group="apps", categories=("all",)),
    Resource("ReplicaSet", "replicasets", ("rs",), group="apps", categories=("all",)),
    Resource("Endpoints", "endpoints", ("ep",)),
    Resource("Event", "events", ("ev",)),
    Resource("Node", "nodes", ("no",), namespaced=False),
    Resource("Namespace", "namespaces", ("ns",), namespaced=False),
    Resource("ConfigMap", "configmaps", ("cm",)),
    Resource("Secret", "secrets"),
)

BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}


def _aliases() -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for r in RESOURCES:
        for name in (r.plural, r.singular, *r.short_names, f"{r.plural}.{r.group}" if r.group else r.plural):
            out.setdefault(name.lower(), r)
    return out


ALIASES: dict[str, Resource] = _aliases()


def resolve(name: str) -> Resource:
    """Decides which resource a name means: plural, singular, short name or plural.group (pods, po, rc.…)."""
    try:
        return ALIASES[name.lower()]
    except KeyError:
        raise KeyError(f'the server doesn\'t have a resource type "{name}"') from None


def in_category(category: str) -> list[Resource]:
    """The resources a category (`all`) expands to, in table order."""
    return [r for r in RESOURCES if category in r.categories]


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs served, core first, in table order."""
    out: list[tuple[str, str]] = []
    for r in RESOURCES:
        if r.group_version not in out:
            out.append(r.group_version)
    return out
