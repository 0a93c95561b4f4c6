"""The service catalogue: the categories citizens report under, each owned by a department.

The catalogue is one aggregate (id ``catalogue``), seeded from a data file on first start
and changed by admins through commands, so it is event-sourced like everything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import resources

from command_api import commands as c
from command_api.domain.actor import Actor
from command_api.domain.errors import Forbidden, Invalid
from events import types as e

CATALOGUE_ID = "catalogue"


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    name: str
    description: str
    department: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    id: str = CATALOGUE_ID
    version: int = 0
    categories: tuple[tuple[str, Category], ...] = ()

    def get(self, code: str) -> Category | None:
        return dict(self.categories).get(code)

    def department_of(self, code: str) -> str:
        category = self.get(code)
        if category is None:
            known = ", ".join(sorted(dict(self.categories))) or "none"
            raise Invalid(f"unknown category {code!r}; known categories: {known}")
        return category.department


def evolve(state: Catalogue, event: e.DomainEvent, occurred_at: datetime) -> Catalogue:  # noqa: ARG001
    if isinstance(event, e.CategoryDefined):
        cats = dict(state.categories)
        cats[event.code] = Category(event.code, event.name, event.description, event.department)
        return replace(state, categories=tuple(sorted(cats.items())))
    return state


def define(state: Catalogue, cmd: c.DefineCategory, actor: Actor) -> list[e.DomainEvent]:
    if not actor.is_admin:
        raise Forbidden("only admins may change the service catalogue")
    wanted = Category(cmd.code, cmd.name, cmd.description, cmd.department)
    if state.get(cmd.code) == wanted:
        return []
    return [e.CategoryDefined(code=cmd.code, name=cmd.name, description=cmd.description, department=cmd.department)]


def seed_commands() -> list[c.DefineCategory]:
    """The categories a new city starts with, from ``command_api/data/categories.json``."""
    raw = resources.files("command_api").joinpath("data/categories.json").read_text(encoding="utf-8")
    return [c.DefineCategory(**item) for item in json.loads(raw)]
