"""The kinds of aggregate the write side decides on, each with its fold (command_api/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from command_api.domain import catalogue, issue, session, user
from command_api.repository import AggregateKind
from events.types import DomainEvent


@dataclass(frozen=True, slots=True)
class Once:
    """The state of an aggregate whose only rule is "once" (enforced by its expected version)."""

    id: str
    version: int = 0


def _no_evolve(state: Once, event: DomainEvent, occurred_at: datetime) -> Once:  # noqa: ARG001
    return state


ISSUE = AggregateKind("issue", lambda id_: issue.Issue(id=id_), issue.evolve, issue.Issue)
USER = AggregateKind("user", lambda id_: user.User(id=id_), user.evolve, user.User)
CATALOGUE = AggregateKind("catalogue", lambda _: catalogue.Catalogue(), catalogue.evolve, catalogue.Catalogue)
SESSION = AggregateKind("session", lambda id_: session.Session(id=id_), session.evolve, session.Session)
NOTIFICATION = AggregateKind("notification", Once, _no_evolve, Once)
