"""``GET /status/events``: the status page's server-sent events.

Every viewer reads the views of the one shared sampler (``StatusMonitor``): an ``event:
status`` a second, whose data is one JSON line (the ``/api/v1/status`` fields plus the
charts as SVG markup). A comment line goes out after ``HEARTBEAT_S`` without an event (the
broker's INFO hanging, say), so proxies keep the stream open. At most ``MAX_VIEWERS`` streams
at once (503 beyond); a viewer that goes away is dropped at the next event it is sent.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..aiowait import within
from .common import parts, require_user
from .status import StatusMonitor

HEARTBEAT_S = 15.0
RETRY_MS = 3000  # how long the browser waits before it reconnects a dropped stream


def frame(view: dict, charts: dict[str, str], event_id: int) -> str:
    data = json.dumps({**view, "charts": charts}, separators=(",", ":"))  # one line: no newline in data
    return f"event: status\nid: {event_id}\ndata: {data}\n\n"


async def _stream(monitor: StatusMonitor, first: dict) -> AsyncIterator[str]:
    queue = monitor.subscribe()  # here, so that a response never sent holds no subscription
    try:
        yield f"retry: {RETRY_MS}\n\n"
        event_id = 1
        yield frame(first, monitor.charts(), event_id)
        while True:
            try:
                view = await within(queue.get(), HEARTBEAT_S)
            except asyncio.TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if view is None:  # the gateway is stopping
                return
            event_id += 1
            yield frame(view, monitor.charts(), event_id)
    finally:
        monitor.unsubscribe(queue)


async def events(request: Request) -> Response:
    require_user(request)
    monitor = parts(request).status
    monitor.check_room()  # 503 when the page has too many viewers
    first = await monitor.snapshot()
    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(_stream(monitor, first), media_type="text/event-stream", headers=headers)


routes = [Route("/status/events", events, methods=["GET"])]
