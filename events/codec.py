"""The wire and storage form of envelopes: compact JSON through orjson."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from events.envelope import Envelope, Position


def envelope_to_dict(envelope: Envelope) -> dict[str, Any]:
    """A JSON-ready dict of the envelope, without its position (the log assigns that)."""
    return {
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "schema_version": envelope.schema_version,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": envelope.aggregate_id,
        "aggregate_version": envelope.aggregate_version,
        "occurred_at": envelope.occurred_at.isoformat(),
        "actor_id": envelope.actor_id,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "payload": envelope.payload,
    }


def envelope_from_dict(data: dict[str, Any], position: Position | None = None) -> Envelope:
    return Envelope(
        event_id=str(data["event_id"]),
        event_type=str(data["event_type"]),
        schema_version=int(data["schema_version"]),
        aggregate_type=str(data["aggregate_type"]),
        aggregate_id=str(data["aggregate_id"]),
        aggregate_version=int(data["aggregate_version"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        actor_id=data.get("actor_id"),
        correlation_id=data.get("correlation_id"),
        causation_id=data.get("causation_id"),
        payload=dict(data["payload"]),
        position=position,
    )


def encode(envelope: Envelope) -> bytes:
    return orjson.dumps(envelope_to_dict(envelope))


def decode_envelope(raw: bytes, position: Position | None = None) -> Envelope:
    """Parse stored bytes; raises ValueError (or KeyError) on anything malformed."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("an envelope must be a JSON object")
    return envelope_from_dict(data, position)
