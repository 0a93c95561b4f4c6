"""Upcasters: every stored version of an event type is brought up to the version the code writes.

An upcaster takes the stored payload of version ``n`` and returns the payload of
version ``n + 1``; chains run until the class's ``schema_version``. Register one
whenever a class's fields change, and keep a stored sample of the old version in
``tests/fixtures/events/`` so the chain stays proven.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events.envelope import Envelope
from events.types import DomainEvent, event_class

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


def _category_defined_v1_to_v2(payload: Payload) -> Payload:
    """v2 added the category's extra attributes; a v1 category had none."""
    return {**payload, "attributes": []}


# (event type, from version) -> function producing version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("CategoryDefined", 1): _category_defined_v1_to_v2,
}


class UnreadableEvent(ValueError):
    """A stored event that cannot be brought to the current schema (a poison event)."""


def upcast(event_type: str, version: int, payload: Payload) -> Payload:
    """The payload of ``event_type`` at the latest schema version."""
    target = event_class(event_type).schema_version
    if version > target:
        raise UnreadableEvent(f"{event_type} v{version} is newer than this code (v{target})")
    while version < target:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnreadableEvent(f"no upcaster for {event_type} v{version}")
        payload = step(payload)
        version += 1
    return payload


def decode(envelope: Envelope) -> DomainEvent:
    """The typed event inside an envelope, upcast to its latest version."""
    cls = event_class(envelope.event_type)
    payload = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
    try:
        return cls.model_validate(payload)
    except ValueError as e:
        raise UnreadableEvent(f"{envelope.event_type} v{envelope.schema_version}: {e}") from e
