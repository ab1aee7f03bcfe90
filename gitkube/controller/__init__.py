"""The control loop's wiring: observe (controller.observe) → plan (reconcile.plan) → apply (controller.apply), run
by `Controller` (controller.loop) for `apply`, `serve` and `diff`. Decisions live in gitkube.reconcile."""
from __future__ import annotations

from gitkube.controller.context import PassReport, Source
from gitkube.controller.loop import Controller

__all__ = ["Controller", "PassReport", "Source"]
