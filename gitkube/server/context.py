"""What every route of the API server shares: read-only store connections (one per worker thread), the change feed
watches wait on, where desired state lives (for the write refusal) and how to reach a node (for logs)."""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from gitkube.store import Store, open_store
from gitkube.store.db import DB_FILE

POLL_SECONDS = 0.1  # how often the change feed looks at the store's resourceVersion


@dataclass
class ApiContext:
    """Built once per server; routes find it as request.app[CTX]."""

    state_dir: str
    desired_state: str  # "the Git repository /path (manifests/)": named when a write is refused
    nodes: Callable[[], list] = list  # -> [NodeConfig]: the inventory, for logs
    token: str | None = None  # bearer token required from clients when set
    workers: int = 4
    store_url: str | None = None  # --store: None is the state dir's SQLite DB
    webhook: object | None = None  # a gitkube.server.hooks.Webhook when serve accepts POST /hooks/git
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _pool: cf.ThreadPoolExecutor | None = field(default=None, repr=False)
    _stores: list = field(default_factory=list, repr=False)
    feed: ChangeFeed | None = field(default=None, repr=False)

    def store(self) -> Store:
        """This thread's read-only connection to the state DB (SQLite WAL: readers never block the writer)."""
        st = getattr(self._local, "store", None)
        if st is not None and getattr(self._local, "empty", False) and os.path.exists(self._db_path()):
            st = None  # opened before the first apply made the DB (an empty in-memory view): open the file now
        if st is None:
            self._local.empty = not os.path.exists(self._db_path())
            st = self._local.store = open_store(self.state_dir, writer=False, url=self.store_url)
            self._stores.append(st)
        return st

    def _db_path(self) -> str:
        return os.path.join(self.state_dir, DB_FILE)

    async def read(self, fn, *args):
        """Run fn(store, *args) on a worker thread with its own connection; big lists never stall the loop."""
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="api-read")
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(self.store(), *args))

    async def blocking(self, fn, *args):
        """Run a blocking call that is not a store read (a node's Docker API) on the default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for st in self._stores:
            try:
                st.close()
            except Exception:  # noqa: BLE001 - a connection of a finished thread
                pass


class ChangeFeed:
    """Polls the store's resourceVersion and wakes every waiting watch when it moves (one poll for all watches)."""

    def __init__(self, ctx: ApiContext):
        self.ctx = ctx
        self.rv = 0
        self._moved = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                rv = await self.ctx.read(lambda st: st.resource_version())
            except Exception:  # noqa: BLE001 - a busy or replaced DB file: look again next tick
                rv = self.rv
            if rv != self.rv:
                self.rv = rv
                moved, self._moved = self._moved, asyncio.Event()
                moved.set()
            await asyncio.sleep(POLL_SECONDS)

    async def wait_past(self, rv: int, timeout: float) -> bool:
        """Wait until the store's resourceVersion is past `rv` (True) or `timeout` seconds pass (False)."""
        if self.rv > rv:
            return True
        try:
            await asyncio.wait_for(self._moved.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.rv > rv

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


# Where routes find what the server shares (aiohttp application keys).
CTX = web.AppKey("gitkube_ctx", ApiContext)
SUBRESOURCES = web.AppKey("gitkube_subresources", dict)  # (kind, subresource) -> async handler(request, target)
NODE_LINKS = web.AppKey("gitkube_node_links", object)  # gitkube.server.logs.NodeLinks
