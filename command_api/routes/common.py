"""What every command route answers, and the error responses OpenAPI documents for them."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from command_api.handlers import CommandResult

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed header", **PROBLEM},
    401: {"description": "Not signed in, or the token is not valid", **PROBLEM},
    403: {"description": "Signed in, but not allowed to do this", **PROBLEM},
    404: {"description": "No such issue or user", **PROBLEM},
    409: {"description": "Stale If-Match version, or a transition the lifecycle forbids", **PROBLEM},
    422: {"description": "Invalid body, or an Idempotency-Key reused with another body", **PROBLEM},
}


def accepted(result: CommandResult, response: Response) -> dict[str, Any]:
    """The command's answer, with its version as an ETag."""
    response.headers["ETag"] = f'"{result.version}"'
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result.as_json()
