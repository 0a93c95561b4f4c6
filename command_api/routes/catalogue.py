"""The service catalogue, changed by admins through commands."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from command_api import commands as c
from command_api.deps import Handlers, Meta
from command_api.models import CategoryBody, CommandAccepted
from command_api.routes.common import COMMAND_ERRORS, accepted
from snapfix.auth import CurrentActor

router = APIRouter(tags=["catalogue"], responses=COMMAND_ERRORS)
CategoryCode = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]


@router.put("/v1/categories/{code}", response_model=CommandAccepted)
async def define(
    code: CategoryCode, body: CategoryBody, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Admins create or change a category and its extra questions (typed, like Open311 attributes)."""
    attributes = tuple(
        c.CategoryAttributeSpec(a.code, a.datatype, a.description, a.required, tuple(a.values)) for a in body.attributes
    )
    cmd = c.DefineCategory(code, body.name, body.description, body.department, attributes)
    return accepted(await handlers.define_category(cmd, actor, meta), response)


@router.delete("/v1/categories/{code}", response_model=CommandAccepted)
async def retire(
    code: CategoryCode, actor: CurrentActor, handlers: Handlers, meta: Meta, response: Response
) -> dict[str, Any]:
    """Admins retire a category: no new reports under it; existing issues keep it."""
    return accepted(await handlers.retire_category(c.RetireCategory(code), actor, meta), response)
