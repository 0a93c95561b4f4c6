"""The published contract in schemas/ is what the code generates."""

from __future__ import annotations

from pathlib import Path

from ops.schemas import differences, generate

SCHEMAS = Path(__file__).parent.parent.parent / "schemas"


class TestPublishedContract:
    def test_the_committed_schemas_match_the_code(self) -> None:
        """An event type, version or route changed without regenerating: run `snapfix schemas` and commit schemas/."""
        stale = differences(SCHEMAS)
        assert not stale, f"schemas/ is out of date ({', '.join(stale)}): run `snapfix schemas` and commit schemas/"

    def test_the_asyncapi_document_lists_every_event_with_its_headers(self) -> None:
        """AsyncAPI 3: one channel for the topic, one message per event type, the routing headers."""
        import orjson

        doc = orjson.loads(generate()["asyncapi.json"])
        assert doc["asyncapi"] == "3.0.0"
        assert doc["channels"]["events"]["address"]
        headers = doc["components"]["schemas"]["Headers"]["properties"]
        assert set(headers) == {
            "event_type",
            "schema_version",
            "aggregate_type",
            "aggregate_id",
            "aggregate_version",
            "correlation_id",
        }
        assert "IssueReported" in doc["components"]["messages"]
