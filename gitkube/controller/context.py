"""What every part of the control loop shares: where desired state comes from, and what a pass reports."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Source:
    """Where desired state comes from."""

    repo: str = "."
    rev: str | None = None
    path: str = "manifests"
    inventory: str = "inventory.yaml"
    age_identity: str | None = None  # decrypts *.age manifests (else env GITKUBE_AGE_IDENTITY)


@dataclass
class PassReport:
    """What one reconcile pass saw and did."""

    sha: str | None = None
    refused: list = field(default_factory=list)
    synced: object = None  # reconcile.plan.SyncSummary
    plan: object = None  # reconcile.plan.PassPlan
    node_actions: dict[str, list] = field(default_factory=dict)  # the actions executed, by node
    node_errors: dict[str, str] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    next_due: float | None = None
    refused_fingerprint: str | None = None  # apply --plan-fingerprint: the plan's own, when it differed
    quiet: bool = False  # nothing had moved since a pass that changed nothing: not planned (controller.quiet)

    def summary(self) -> str:
        parts = []
        if self.refused_fingerprint:
            parts.append(f"plan {self.refused_fingerprint} is not the one expected: the world moved; nothing changed")
        if self.refused:
            parts.append(f"revision {str(self.sha)[:12]} REFUSED ({len(self.refused)} problem(s)); last good revision stays applied")
        elif self.synced is not None and not self.synced.in_sync:
            s = self.synced
            parts.append(f"revision {str(self.sha)[:12]}: {len(s.added)} added, {len(s.changed)} changed, {len(s.removed)} removed")
        c = getattr(self.plan, "cluster", None)
        if c is not None:
            for label, n in (("pods created", len(c.create)), ("pods deleted", len(c.delete)), ("bound", len(c.bindings)),
                             ("unschedulable", len(c.unschedulable))):
                if n:
                    parts.append(f"{n} {label}")
        acts = sum(len(a) for a in self.node_actions.values())
        if acts:
            parts.append(f"{acts} node action(s)")
        for n, e in sorted(self.node_errors.items()):
            parts.append(f"node {n}: {e}")
        return "; ".join(parts) or "no changes"
