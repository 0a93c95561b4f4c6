"""Event classes of schema versions the code no longer writes, kept for the published contract.

Each is the class as it was when that version was current (from the git history). The
log may still hold such events: the upcasters in :mod:`events.upcasting` bring them to
the current class; ``schemas/events`` publishes their JSON Schema; ``tests/fixtures/events``
keeps a stored sample of each.
"""

from __future__ import annotations

from typing import ClassVar

from events.types import CatalogueEvent, DomainEvent


class CategoryDefinedV1(CatalogueEvent):
    """CategoryDefined before v2 added ``attributes``."""

    schema_version: ClassVar[int] = 1

    code: str
    name: str
    description: str
    department: str

    @classmethod
    def event_type(cls) -> str:
        return "CategoryDefined"


HISTORIC: tuple[type[DomainEvent], ...] = (CategoryDefinedV1,)
