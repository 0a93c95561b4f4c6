"""The User aggregate: registration, profile and roles."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from command_api import commands as c
from command_api.domain.actor import ADMIN, ROLES, Actor
from command_api.domain.errors import Forbidden, Invalid, NotFound
from events import types as e


@dataclass(frozen=True, slots=True)
class User:
    id: str
    version: int = 0
    email: str = ""
    display_name: str = ""
    password_hash: str = ""
    roles: frozenset[str] = frozenset()

    @property
    def exists(self) -> bool:
        return self.version > 0

    def as_actor(self) -> Actor:
        return Actor(user_id=self.id, roles=self.roles)


def normalise_email(email: str) -> str:
    """One spelling per mailbox: trimmed and lower-cased."""
    return email.strip().lower()


def evolve(state: User, event: e.DomainEvent, occurred_at: datetime) -> User:  # noqa: ARG001
    match event:
        case e.UserRegistered():
            return replace(
                state,
                email=event.email,
                display_name=event.display_name,
                password_hash=event.password_hash,
                roles=frozenset(event.roles),
            )
        case e.UserProfileChanged():
            return replace(state, display_name=event.display_name)
        case e.UserRoleGranted():
            return replace(state, roles=state.roles | {event.role})
        case e.UserRoleRevoked():
            return replace(state, roles=state.roles - {event.role})
        case e.UserPasswordRehashed():
            return replace(state, password_hash=event.password_hash)
        case _:
            return state


def register(cmd: c.RegisterUser, password_hash: str) -> list[e.DomainEvent]:
    roles = tuple(sorted(set(cmd.roles) | {"citizen"}))
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise Invalid(f"unknown roles: {', '.join(sorted(unknown))}")
    return [
        e.UserRegistered(
            email=normalise_email(cmd.email),
            display_name=cmd.display_name.strip(),
            password_hash=password_hash,
            roles=roles,
        )
    ]


def change_profile(state: User, cmd: c.ChangeProfile, actor: Actor) -> list[e.DomainEvent]:
    _require_exists(state)
    if actor.user_id != state.id and not actor.is_admin:
        raise Forbidden("you may change only your own profile")
    name = cmd.display_name.strip()
    if name == state.display_name:
        return []
    return [e.UserProfileChanged(display_name=name)]


def grant_role(state: User, cmd: c.GrantRole, actor: Actor) -> list[e.DomainEvent]:
    _require_exists(state)
    _require_admin(actor)
    if cmd.role not in ROLES:
        raise Invalid(f"unknown role {cmd.role!r}")
    if cmd.role in state.roles:
        return []
    return [e.UserRoleGranted(role=cmd.role)]


def revoke_role(state: User, cmd: c.RevokeRole, actor: Actor) -> list[e.DomainEvent]:
    _require_exists(state)
    _require_admin(actor)
    if cmd.role == "citizen":
        raise Invalid("every user keeps the citizen role")
    if cmd.role == ADMIN and actor.user_id == state.id:
        raise Invalid("an admin cannot revoke their own admin role")
    if cmd.role not in state.roles:
        return []
    return [e.UserRoleRevoked(role=cmd.role)]


def _require_exists(state: User) -> None:
    if not state.exists:
        raise NotFound(f"user {state.id} does not exist")


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("only admins may change roles")


def rehash_password(state: User, password_hash: str) -> list[e.DomainEvent]:
    """Keep a hash made with the server's current parameters (the password itself was just verified)."""
    _require_exists(state)
    if password_hash == state.password_hash:
        return []
    return [e.UserPasswordRehashed(password_hash=password_hash)]
