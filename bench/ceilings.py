"""The ceiling apps: what the same server does with no SnapFix code in the way.

``bare_app`` is a raw ASGI callable answering every GET with the exact bytes (and
headers) of a cached issue-detail read, read from ``BENCH_BODY_FILE``.
``fastapi_app`` is a FastAPI app with one route returning a constant, as GET and as
POST (the POST reads its body, as a command route must).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

CONSTANT = b'{"id":"00000000-0000-0000-0000-000000000000","version":1,"position":"0.1"}'


def bare_app() -> Any:
    """A bare ASGI app: same body and headers as the cached detail read."""
    spec = orjson.loads(Path(os.environ["BENCH_BODY_FILE"]).read_bytes())
    body = spec["body"].encode()
    headers = [(k.encode(), v.encode()) for k, v in spec["headers"]] + [(b"content-length", str(len(body)).encode())]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message = {"type": "http.response.body", "body": body}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send(start)
        await send(message)

    return app


def fastapi_app() -> FastAPI:
    """FastAPI with a constant GET and a constant POST route."""
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/const")
    async def get_const() -> Response:
        return Response(CONSTANT, media_type="application/json")

    @app.post("/const", status_code=201)
    async def post_const(request: Request) -> Response:
        await request.body()
        return Response(CONSTANT, status_code=201, media_type="application/json")

    @app.put("/const")
    async def put_const(request: Request) -> Response:
        await request.body()
        return Response(CONSTANT, media_type="application/json")

    return app
