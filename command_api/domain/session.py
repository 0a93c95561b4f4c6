"""Sign-in sessions: one refresh-token family per sign-in, rotated on every refresh, killed on reuse.

Why the log and not a separate token table: reuse detection needs server-side state that
every command-API process sees and that changes atomically ("this token is spent, that one
is current"). A session is therefore an aggregate (id ``session-<family>``) on the same
event store as everything else. Optimistic concurrency makes rotation race-free across any
number of processes: two refreshes with the same token both read version n, one appends
n+1, the other conflicts, reloads, sees its token spent and revokes the family. The
distributed deployment gets this for free from its EventStore adapter, with no extra store
to run. Only token ids (the JWT ``jti``) are recorded, never the tokens themselves.

Access tokens stay valid until they expire (minutes): checking a revocation list on every
read would cost a lookup per request, which short lifetimes make unnecessary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from command_api import commands as c
from command_api.domain.errors import Forbidden, NotFound
from events import types as e


class RefreshTokenReused(Forbidden):
    """A spent refresh token came back: someone holds a copy, so the whole family is revoked."""

    code = "refresh-token-reused"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    version: int = 0
    user_id: str = ""
    current_token_id: str = ""
    revoked: bool = False

    @property
    def exists(self) -> bool:
        return self.version > 0


def aggregate_id(family: str) -> str:
    return f"session-{family}"


def evolve(state: Session, event: e.DomainEvent, occurred_at: datetime) -> Session:  # noqa: ARG001
    match event:
        case e.SessionStarted():
            return replace(state, user_id=event.user_id, current_token_id=event.token_id)
        case e.SessionRefreshed():
            return replace(state, current_token_id=event.token_id)
        case e.SessionRevoked():
            return replace(state, revoked=True)
        case _:
            return state


def start(cmd: c.StartSession) -> list[e.DomainEvent]:
    return [e.SessionStarted(user_id=cmd.user_id, token_id=cmd.token_id)]


def rotate(state: Session, cmd: c.RotateRefreshToken) -> list[e.DomainEvent]:
    """The new token if the presented one is current; a revocation if it was already spent.

    The caller must treat a returned SessionRevoked as a refusal (and record it), which is
    why this returns events instead of raising: the revocation has to reach the log.
    """
    _check_owner(state, cmd.user_id)
    if state.revoked:
        raise Forbidden("this session has ended: sign in again")
    if cmd.presented_token_id != state.current_token_id:
        return [e.SessionRevoked(reason="refresh token reused")]
    return [e.SessionRefreshed(previous_token_id=cmd.presented_token_id, token_id=cmd.new_token_id)]


def end(state: Session, cmd: c.EndSession) -> list[e.DomainEvent]:
    """Sign-out; ending an ended session changes nothing."""
    _check_owner(state, cmd.user_id)
    return [] if state.revoked else [e.SessionRevoked(reason="signed out")]


def _check_owner(state: Session, user_id: str) -> None:
    if not state.exists:
        raise NotFound("no such session")
    if state.user_id != user_id:
        raise Forbidden("this session belongs to someone else")
