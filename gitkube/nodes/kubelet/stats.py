"""Reading a node's container usage over its existing SSH connection (the cAdvisor role, through the Engine API).

One sample of a node = one list call for gitkube's running containers + one one-shot stats call per container
(Docker has no bulk stats endpoint), at most `concurrency` at a time over the node's pooled dial-stdio channels —
never one SSH connection per container. Pods' infra (pause) containers are skipped: they hold namespaces and use
next to nothing, and skipping them halves the calls.

The engine answers a one-shot stats call on its stats collector's next tick (once a second), and answers every call
waiting at that tick together: a sample takes about containers ÷ concurrency seconds (bench/bench_usage.py, 100
containers a node: 26.5 s at 4, 13.5 s at 8). Hence 16 at a time: the node's pool keeps 8 dial-stdio channels and
the others are opened for the sample and closed after it, on the same SSH connection."""
from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass

from gitkube.nodes.transport.docker_api import APIError, NotFound
from gitkube.nodes.transport.fleet import NodeHandle
from gitkube.reconcile.podsync import INFRA
from gitkube.reconcile.usage import ContainerReading, reading_from_stats

DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class NodeSample:
    node: str
    readings: list[ContainerReading]
    calls: int  # Docker API calls this sample made
    seconds: float


def sample_node(h: NodeHandle, concurrency: int = DEFAULT_CONCURRENCY) -> NodeSample:
    """Every running gitkube container's reading on one node (containers that stop meanwhile are left out)."""
    t0 = time.monotonic()
    calls = 1
    listed = h.docker.list(["io.gitkube.managed=true"], running=True)
    wanted = [c for c in listed
              if (c.get("Labels") or {}).get("io.gitkube.container.name") != INFRA
              and ((c.get("Labels") or {}).get("io.gitkube.pod.uid") or (c.get("Labels") or {}).get("io.gitkube.role"))]

    def one(c: dict) -> ContainerReading | None:
        try:
            st = h.docker.stats_once(c["Id"])
        except (NotFound, APIError):
            return None  # gone between the list and its stats
        return reading_from_stats({**st, "id": c["Id"]}, h.name, c.get("Labels") or {}, time.time())

    readings: list[ContainerReading] = []
    if wanted:
        with cf.ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(wanted))),
                                   thread_name_prefix=f"stats-{h.name}") as pool:
            for r in pool.map(one, wanted):
                calls += 1
                if r is not None:
                    readings.append(r)
    return NodeSample(h.name, readings, calls, time.monotonic() - t0)
