"""The service catalogue: the categories citizens report under, each owned by a department.

The catalogue is one aggregate (id ``catalogue``), seeded from a data file on first start
and changed by admins through commands, so it is event-sourced like everything else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import resources
from typing import Any

from command_api import commands as c
from command_api.domain.actor import Actor
from command_api.domain.errors import Forbidden, Invalid, NotFound
from events import types as e

CATALOGUE_ID = "catalogue"
DATATYPES = frozenset({"string", "text", "number", "boolean", "datetime", "singlevaluelist", "multivaluelist"})
LIST_TYPES = frozenset({"singlevaluelist", "multivaluelist"})
MAX_ATTRIBUTES = 20


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    name: str
    description: str
    department: str
    attributes: tuple[c.CategoryAttributeSpec, ...] = ()
    retired: bool = False


@dataclass(frozen=True, slots=True)
class Catalogue:
    id: str = CATALOGUE_ID
    version: int = 0
    categories: tuple[tuple[str, Category], ...] = ()

    def get(self, code: str) -> Category | None:
        return dict(self.categories).get(code)

    def open_category(self, code: str) -> Category:
        """The category a new report or an edit may use: it must exist and not be retired."""
        category = self.get(code)
        if category is None or category.retired:
            known = ", ".join(sorted(k for k, v in self.categories if not v.retired)) or "none"
            raise Invalid(f"unknown category {code!r}; known categories: {known}")
        return category

    def department_of(self, code: str) -> str:
        return self.open_category(code).department


def _spec(attr: e.CategoryAttribute) -> c.CategoryAttributeSpec:
    return c.CategoryAttributeSpec(attr.code, attr.datatype, attr.description, attr.required, tuple(attr.values))


def evolve(state: Catalogue, event: e.DomainEvent, occurred_at: datetime) -> Catalogue:  # noqa: ARG001
    cats = dict(state.categories)
    if isinstance(event, e.CategoryDefined):
        attributes = tuple(_spec(a) for a in event.attributes)
        cats[event.code] = Category(event.code, event.name, event.description, event.department, attributes)
    elif isinstance(event, e.CategoryRetired) and event.code in cats:
        cats[event.code] = replace(cats[event.code], retired=True)
    else:
        return state
    return replace(state, categories=tuple(sorted(cats.items())))


def define(state: Catalogue, cmd: c.DefineCategory, actor: Actor) -> list[e.DomainEvent]:
    """Create or change a category (defining a retired one brings it back); unchanged is a no-op."""
    _require_admin(actor)
    _check_specs(cmd.attributes)
    wanted = Category(cmd.code, cmd.name, cmd.description, cmd.department, tuple(cmd.attributes))
    if state.get(cmd.code) == wanted:
        return []
    return [
        e.CategoryDefined(
            code=cmd.code,
            name=cmd.name,
            description=cmd.description,
            department=cmd.department,
            attributes=tuple(
                e.CategoryAttribute(
                    code=a.code, datatype=a.datatype, description=a.description, required=a.required, values=a.values
                )
                for a in cmd.attributes
            ),
        )
    ]


def retire(state: Catalogue, cmd: c.RetireCategory, actor: Actor) -> list[e.DomainEvent]:
    _require_admin(actor)
    category = state.get(cmd.code)
    if category is None:
        raise NotFound(f"no category {cmd.code!r}")
    return [] if category.retired else [e.CategoryRetired(code=cmd.code)]


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("only admins may change the service catalogue")


def _check_specs(specs: tuple[c.CategoryAttributeSpec, ...]) -> None:
    if len(specs) > MAX_ATTRIBUTES:
        raise Invalid(f"a category asks at most {MAX_ATTRIBUTES} extra questions")
    codes = [s.code for s in specs]
    if len(set(codes)) != len(codes):
        raise Invalid("attribute codes must be unique within a category")
    for spec in specs:
        if spec.datatype not in DATATYPES:
            raise Invalid(f"attribute {spec.code!r}: datatype must be one of {', '.join(sorted(DATATYPES))}")
        if (spec.datatype in LIST_TYPES) != bool(spec.values):
            raise Invalid(f"attribute {spec.code!r}: list datatypes need values, other datatypes take none")


def check_answers(category: Category, answers: Mapping[str, Any]) -> dict[str, Any]:
    """A report's answers to its category's extra questions, checked against their declared types.

    Answers are checked here, in the domain, so every client (HTTP, CLI, a future Open311
    endpoint) gets the same rules; unknown and missing required answers are refused.
    """
    specs = {s.code: s for s in category.attributes}
    unknown = sorted(set(answers) - set(specs))
    if unknown:
        raise Invalid(f"category {category.code!r} asks no question {', '.join(map(repr, unknown))}")
    missing = sorted(s.code for s in category.attributes if s.required and answers.get(s.code) is None)
    if missing:
        raise Invalid(f"category {category.code!r} needs an answer for {', '.join(map(repr, missing))}")
    return {code: _check_answer(specs[code], value) for code, value in answers.items() if value is not None}


def _check_answer(spec: c.CategoryAttributeSpec, value: Any) -> Any:
    wrong = Invalid(f"attribute {spec.code!r} must be a {spec.datatype}")
    match spec.datatype:
        case "string" | "text":
            limit = 200 if spec.datatype == "string" else 5000
            if not isinstance(value, str) or len(value) > limit:
                raise wrong
        case "number":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise wrong
        case "boolean":
            if not isinstance(value, bool):
                raise wrong
        case "datetime":
            try:
                datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise wrong from None
        case "singlevaluelist":
            if value not in spec.values:
                raise Invalid(f"attribute {spec.code!r} must be one of {', '.join(spec.values)}")
        case "multivaluelist":
            choices = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
            if choices is None or not set(choices) <= set(spec.values) or len(set(choices)) != len(choices):
                raise Invalid(
                    f"attribute {spec.code!r} must be a list of distinct values among {', '.join(spec.values)}"
                )
    return value


def seed_commands() -> list[c.DefineCategory]:
    """The categories a new city starts with, from ``command_api/data/categories.json``."""
    raw = resources.files("command_api").joinpath("data/categories.json").read_text(encoding="utf-8")
    return [
        c.DefineCategory(
            **{**item, "attributes": tuple(_seed_spec(a) for a in item.get("attributes", ()))},
        )
        for item in json.loads(raw)
    ]


def _seed_spec(raw: Mapping[str, Any]) -> c.CategoryAttributeSpec:
    return c.CategoryAttributeSpec(**{**raw, "values": tuple(raw.get("values", ()))})
