"""The user profile, the service catalogue and the issue history views. Pure folds."""

from __future__ import annotations

from events import types as e
from events.envelope import Envelope
from projectors.ports import Collection, Doc
from projectors.projection import Projection, already_applied, by_aggregate, iso


def fold_user(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    """A user's profile. The password hash never reaches a view."""
    if already_applied(doc, env):
        return doc
    if isinstance(event, e.UserRegistered):
        new: Doc = {
            "id": env.aggregate_id,
            "email": event.email,
            "display_name": event.display_name,
            "roles": sorted(event.roles),
            "created_at": iso(env.occurred_at),
        }
    elif doc is None:
        return None
    elif isinstance(event, e.UserPasswordRehashed):  # nothing the profile shows: only its version moves
        return {**doc, "version": env.aggregate_version}
    else:
        new = {**doc}
        match event:
            case e.UserProfileChanged():
                new["display_name"] = event.display_name
            case e.UserRoleGranted():
                new["roles"] = sorted({*doc["roles"], event.role})
            case e.UserRoleRevoked():
                new["roles"] = sorted(set(doc["roles"]) - {event.role})
    new["version"] = env.aggregate_version
    new["updated_at"] = iso(env.occurred_at)
    return new


def category_key(env: Envelope) -> str | None:
    return env.payload.get("code") if env.event_type in ("CategoryDefined", "CategoryRetired") else None


def fold_category(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    """One category per document; ``version`` is the catalogue's version that last defined it."""
    if already_applied(doc, env):
        return doc
    if isinstance(event, e.CategoryRetired):
        return None if doc is None else {**doc, "retired": True, "version": env.aggregate_version}
    if not isinstance(event, e.CategoryDefined):
        return doc
    return {
        "id": event.code,
        "code": event.code,
        "name": event.name,
        "description": event.description,
        "department": event.department,
        "attributes": [a.model_dump(mode="json") for a in event.attributes],
        "retired": False,
        "version": env.aggregate_version,
    }


def history_key(env: Envelope) -> str | None:
    """One document per issue event: replays overwrite it with the same content."""
    if env.aggregate_type != "issue":
        return None
    return f"{env.aggregate_id}:{env.aggregate_version:010d}"


def fold_history(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    if doc is not None:
        return doc
    return {
        "id": history_key(env),
        "aggregate_id": env.aggregate_id,
        "version": env.aggregate_version,
        "event_id": env.event_id,
        "event_type": env.event_type,
        "schema_version": event.schema_version,
        "occurred_at": iso(env.occurred_at),
        "actor_id": env.actor_id,
        "correlation_id": env.correlation_id,
        "data": event.model_dump(mode="json"),
    }


user_profile = Projection(Collection(name="user_profile"), by_aggregate("user"), fold_user)
categories = Projection(Collection(name="categories", fields={"department": "text"}), category_key, fold_category)
issue_history = Projection(
    Collection(
        name="issue_history", fields={"aggregate_id": "text", "version": "int"}, indexes=(("aggregate_id", "version"),)
    ),
    history_key,
    fold_history,
)
