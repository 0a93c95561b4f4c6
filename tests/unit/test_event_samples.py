"""Schema evolution: every event type and version ever written stays readable through the upcasters."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from events.codec import decode_envelope
from events.historic import HISTORIC
from events.types import EVENT_CLASSES, event_class
from events.upcasting import decode

SAMPLES = Path(__file__).parent.parent / "fixtures" / "events"
FILES = sorted(SAMPLES.glob("*.json"))


class TestStoredSamples:
    @pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
    def test_every_stored_sample_decodes_to_the_latest_version(self, path: Path) -> None:
        """A stored envelope of any version is upcast to the class the code writes now and validates."""
        envelope = decode_envelope(path.read_bytes())
        event = decode(envelope)
        assert type(event) is event_class(envelope.event_type)
        assert f"{envelope.event_type}.v{envelope.schema_version}" == path.stem

    def test_every_version_of_every_event_type_has_a_stored_sample(self) -> None:
        """A new event type or version needs a sample: `snapfix export --raw --type <Type> --limit 1` writes one."""
        versions = {f"{c.event_type()}.v{v}" for c in EVENT_CLASSES for v in range(1, c.schema_version + 1)}
        missing = sorted(versions - {p.stem for p in FILES})
        assert not missing, f"add a stored sample to tests/fixtures/events/ for: {', '.join(missing)}"

    @pytest.mark.parametrize("cls", HISTORIC, ids=[f"{c.event_type()}.v{c.schema_version}" for c in HISTORIC])
    def test_old_samples_are_what_their_version_wrote(self, cls: type) -> None:
        """The sample of an old version validates against that version's class, so it proves the upcaster."""
        stored = orjson.loads((SAMPLES / f"{cls.event_type()}.v{cls.schema_version}.json").read_bytes())
        cls.model_validate(stored["payload"])
