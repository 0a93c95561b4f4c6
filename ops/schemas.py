"""The published contract, generated from the code: event JSON Schemas, the envelope, AsyncAPI 3, OpenAPI.

``snapfix schemas`` writes it into ``schemas/``; a test fails when the committed files
differ from what the code generates, so a new event type or route is published with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from events.historic import HISTORIC
from events.types import EVENT_CLASSES, DomainEvent

HEADERS = ("event_type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version", "correlation_id")


def topic_name() -> str:
    """The event topic's name, as the Kafka adapter creates it."""
    try:
        from events.kafka_log import KafkaTopic
    except ImportError:  # the runtime-only install has no Kafka client
        return "snapfix.events"
    return str(KafkaTopic.__dataclass_fields__["name"].default)


def event_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    schema = cls.model_json_schema()
    schema["title"] = f"{cls.event_type()} v{cls.schema_version}"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://snapfix.example/schemas/events/{cls.event_type()}.v{cls.schema_version}.json",
        "x-event-type": cls.event_type(),
        "x-schema-version": cls.schema_version,
        "x-aggregate-type": cls.aggregate_type,
        **schema,
    }


def envelope_schema() -> dict[str, Any]:
    text = {"type": "string"}
    optional = {"type": ["string", "null"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://snapfix.example/schemas/envelope.json",
        "title": "Envelope",
        "description": "Every event on the log: the value of each Kafka record, a row of the SQLite log. "
        "`payload` follows events/<event_type>.v<schema_version>.json.",
        "type": "object",
        "required": [
            "event_id",
            "event_type",
            "schema_version",
            "aggregate_type",
            "aggregate_id",
            "aggregate_version",
            "occurred_at",
            "payload",
        ],
        "properties": {
            "event_id": {**text, "format": "uuid"},
            "event_type": {**text, "enum": sorted({c.event_type() for c in EVENT_CLASSES})},
            "schema_version": {"type": "integer", "minimum": 1},
            "aggregate_type": {**text, "enum": sorted({c.aggregate_type for c in EVENT_CLASSES})},
            "aggregate_id": text,
            "aggregate_version": {"type": "integer", "minimum": 1},
            "occurred_at": {**text, "format": "date-time"},
            "actor_id": optional,
            "correlation_id": optional,
            "causation_id": optional,
            "payload": {"type": "object"},
        },
        "additionalProperties": False,
    }


def asyncapi() -> dict[str, Any]:
    topic = topic_name()
    messages = {
        cls.event_type(): {
            "name": cls.event_type(),
            "title": cls.event_type(),
            "summary": (cls.__doc__ or cls.event_type()).strip().splitlines()[0],
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/Headers"},
            "payload": {"$ref": "#/components/schemas/Envelope"},
            "x-payload-schema": f"events/{cls.event_type()}.v{cls.schema_version}.json",
            "bindings": {"kafka": {"key": {"type": "string", "description": "the aggregate id"}}},
        }
        for cls in EVENT_CLASSES
    }
    header_types = {"schema_version": "integer as text", "aggregate_version": "integer as text"}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SnapFix events",
            "version": "1.0.0",
            "description": "The event log. Values are JSON envelopes; headers repeat the routing fields as UTF-8 "
            "strings so tools (kcat, Kafka UI) can filter without parsing values. Keys are aggregate ids: one "
            "aggregate's events stay in one partition, in version order.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": topic,
                "description": "Every event of every aggregate, keyed by aggregate id.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            }
        },
        "operations": {
            "consumeEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/events"},
                "summary": "Projectors and analysts read the log.",
                "messages": [{"$ref": f"#/channels/events/messages/{name}"} for name in messages],
            }
        },
        "components": {
            "messages": messages,
            "schemas": {
                "Envelope": {"$ref": "envelope.json"},
                "Headers": {
                    "type": "object",
                    "required": [h for h in HEADERS if h != "correlation_id"],
                    "properties": {
                        h: {"type": "string", "description": header_types.get(h, "UTF-8 text")} for h in HEADERS
                    },
                },
            },
        },
    }


def openapi(role: str) -> dict[str, Any]:
    from snapfix.app import create_app
    from snapfix.settings import Settings

    return create_app(Settings(environment="test"), role).openapi()  # type: ignore[arg-type]


def generate() -> dict[str, bytes]:
    """Every file of the contract, by path under ``schemas/``."""
    files: dict[str, Any] = {
        f"events/{cls.event_type()}.v{cls.schema_version}.json": event_schema(cls)
        for cls in (*EVENT_CLASSES, *HISTORIC)
    }
    files["envelope.json"] = envelope_schema()
    files["asyncapi.json"] = asyncapi()
    files["openapi-command.json"] = openapi("command")
    files["openapi-query.json"] = openapi("query")
    return {
        path: orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
        for path, doc in sorted(files.items())
    }


def write(out: Path) -> list[str]:
    """Write the files that changed; returns their paths. Files of events no longer generated are left alone."""
    written = []
    for path, content in generate().items():
        target = out / path
        if not target.exists() or target.read_bytes() != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written.append(path)
    return written


def differences(out: Path) -> list[str]:
    """The generated files that are missing or differ under ``out``."""
    return [p for p, c in generate().items() if not (out / p).exists() or (out / p).read_bytes() != c]
