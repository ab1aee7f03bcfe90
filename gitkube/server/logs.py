"""pods/{name}/log: a container's logs read from its node over SSH+Docker (container, previous, tailLines,
follow), streamed as text/plain so `kubectl logs [-f]` works. The server keeps its own node connections: a
follow holds one Docker stream for as long as the client reads."""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import time

from aiohttp import web

from gitkube.nodes.kubelet.podio import container_for
from gitkube.nodes.transport.docker_api import NodeDocker
from gitkube.nodes.transport.fleet import Fleet
from gitkube.server import query
from gitkube.server.context import CTX, NODE_LINKS
from gitkube.server.status import not_found, status_response

log = logging.getLogger(__name__)


class NodeLinks:
    """One Fleet for the nodes of the inventory, rebuilt when the inventory changes."""

    def __init__(self, nodes):
        self._nodes = nodes
        self._fleet: Fleet | None = None
        self._key = None
        self._lock = threading.Lock()

    def handle(self, name: str):
        nodes = self._nodes()
        key = tuple((n.name, n.host, n.port, n.user, n.identity_file, n.host_keys, n.docker_host) for n in nodes)
        with self._lock:
            if self._fleet is None or key != self._key:
                if self._fleet is not None:
                    self._fleet.close()
                self._fleet, self._key = Fleet(nodes), key
            return self._fleet[name] if name in self._fleet.nodes else None

    def close(self) -> None:
        if self._fleet is not None:
            self._fleet.close()


def _int(v: str | None, what: str) -> int | None:
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise query.BadRequest(f"{what} must be an integer, not {v!r}") from None


async def pod_log(request: web.Request, t) -> web.StreamResponse:
    """GET /api/v1/namespaces/NS/pods/NAME/log"""
    ctx, q = request.app[CTX], request.query
    pod = await ctx.read(query.get_one, t.resource, t.namespace, t.name)
    if pod is None:
        return not_found("pods", t.name)
    try:
        tail = _int(q.get("tailLines"), "tailLines")
        since = _int(q.get("sinceSeconds"), "sinceSeconds")
    except query.BadRequest as e:
        return status_response(400, str(e))
    follow = q.get("follow") in ("true", "1", "True")
    previous = q.get("previous") in ("true", "1", "True")
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    container = q.get("container") or (names[0] if len(names) == 1 else None)
    if container is None:
        return status_response(400, f'a container name must be specified for pod {t.name}, choose one of: '
                                    f'[{" ".join(names)}]')
    if container not in names:
        return status_response(400, f'container {container} is not valid for pod {t.name}')
    node = pod["spec"].get("nodeName")
    if not node:
        return status_response(400, f'pod {t.name} does not have a host assigned')
    links: NodeLinks = request.app[NODE_LINKS]
    try:
        h = await ctx.blocking(links.handle, node)
        if h is None:
            return status_response(500, f"node {node} of pod {t.name} is not in the inventory gitkube reads")
        cid = await ctx.blocking(container_for, h, pod["metadata"]["uid"], container, previous)
    except Exception as e:  # noqa: BLE001 - a node that cannot be reached is the client's answer, not a crash
        return status_response(500, f"cannot read logs from node {node}: {e}")
    if cid is None:
        what = "previous terminated container" if previous else "container"
        return status_response(400, f'{what} "{container}" in pod "{t.name}" is waiting to start or not found')
    kw = {"stdout": True, "stderr": True, "tail": tail if tail is not None and tail >= 0 else "all",
          "timestamps": q.get("timestamps") in ("true", "1", "True")}
    if since is not None:  # sinceSeconds (kubectl logs --since): the engine takes a Unix time
        kw["since"] = int(time.time()) - since
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    if not follow:
        try:
            data = await ctx.blocking(lambda: h.docker.logs(cid, **kw))
        except Exception as e:  # noqa: BLE001
            return status_response(500, f"cannot read logs from node {node}: {e}")
        await resp.prepare(request)
        await resp.write(data)
        await resp.write_eof()
        return resp
    return await _follow(request, resp, h, cid, kw)


async def _follow(request, resp, h, cid, kw) -> web.StreamResponse:
    """Stream a container's new lines until the client leaves: a thread reads the Docker stream (its own client,
    no call timeout: a quiet container is no error) and hands chunks to the loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)
    docker = NodeDocker(h.ssh, h.config.docker_host, timeout=None)
    holder: dict = {}

    def hand_over(item) -> bool:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not holder.get("stopped"):
            try:
                fut.result(timeout=1.0)
                return True
            except cf.TimeoutError:
                continue
        fut.cancel()
        return False

    def pump():
        try:
            stream = holder["stream"] = docker.logs_stream(cid, **kw)
            for chunk in stream:
                if not hand_over(chunk):
                    return
        except Exception as e:  # noqa: BLE001 - the stream ends when the client leaves or the container goes
            log.debug("log stream of %s ended: %s", cid[:12], e)
        finally:
            try:
                hand_over(None)
            except RuntimeError:  # the loop is gone (server stopping)
                pass

    await resp.prepare(request)
    threading.Thread(target=pump, daemon=True, name="api-log-follow").start()
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            await resp.write(chunk)
        await resp.write_eof()
    finally:
        holder["stopped"] = True
        stream = holder.get("stream")
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass
        docker.close()
    return resp


routes = web.RouteTableDef()  # no paths of its own: objects.read hands it pods/NAME/log
SUBRESOURCE_HANDLERS = {("Pod", "log"): pod_log}
