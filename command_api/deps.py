"""The write API's dependencies: handlers, request metadata, If-Match and Idempotency-Key."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request

from command_api.handlers import CommandHandlers, Idempotency
from events.envelope import Metadata
from snapfix.auth import ContainerDep, OptionalActor
from snapfix.http import ProblemError
from snapfix.logs import current_correlation_id

ETAG_VERSION = re.compile(r'^(?:W/)?"?(\d{1,12})"?$')


async def handlers(c: ContainerDep) -> CommandHandlers:
    assert c.handlers is not None, "this process does not serve commands"
    return c.handlers


async def metadata(actor: OptionalActor) -> Metadata:
    return Metadata(actor_id=actor.user_id if actor else None, correlation_id=current_correlation_id())


async def expected_version(
    if_match: Annotated[str | None, Header(description='the version you last read, e.g. `3` or `"3"`')] = None,
) -> int | None:
    if if_match is None:
        return None
    match = ETAG_VERSION.match(if_match.strip())
    if not match:
        raise ProblemError(400, "bad-if-match", "Bad If-Match", 'If-Match must be a version number, e.g. "3"')
    return int(match.group(1))


async def idempotency(
    request: Request,
    actor: OptionalActor,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="retry-safe key: the same key and body replay the answer")
    ] = None,
) -> Idempotency | None:
    if idempotency_key is None:
        return None
    if not idempotency_key.strip() or not idempotency_key.isprintable():
        raise ProblemError(
            400, "bad-idempotency-key", "Bad Idempotency-Key", "Idempotency-Key must be 1 to 200 printable characters"
        )
    body = await request.body()
    scope = actor.user_id if actor else "anonymous"
    return Idempotency.of(idempotency_key, scope, request.method, request.url.path, body.decode("utf-8", "replace"))


Handlers = Annotated[CommandHandlers, Depends(handlers)]
Meta = Annotated[Metadata, Depends(metadata)]
ExpectedVersion = Annotated[int | None, Depends(expected_version)]
IdempotencyDep = Annotated[Idempotency | None, Depends(idempotency)]
