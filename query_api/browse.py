"""Browse parameters to a view-store query, and opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from projectors.ports import Cond, Doc, Query

Sort = Literal["newest", "oldest", "upvotes", "updated"]
ORDER: dict[str, tuple[tuple[str, bool], ...]] = {
    "newest": (("created_at", True), ("id", True)),
    "oldest": (("created_at", False), ("id", False)),
    "upvotes": (("upvotes", True), ("id", True)),
    "updated": (("updated_at", True), ("id", True)),
}


class BadCursor(ValueError):
    """A cursor that this API did not make, or made for another sort."""


@dataclass(frozen=True, slots=True)
class Browse:
    status: str | None = None
    category: str | None = None
    department: str | None = None
    reporter: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    sort: Sort = "newest"
    cursor: str | None = None
    limit: int = 20

    def query(self) -> Query:
        where: list[Cond] = [Cond("hidden", "eq", False)]  # staff-hidden issues are not browsable
        for field, value in (
            ("status", self.status),
            ("category", self.category),
            ("department", self.department),
            ("reporter_id", self.reporter),
        ):
            if value is not None:
                where.append(Cond(field, "in", value.split(",")) if "," in value else Cond(field, "eq", value))
        if self.created_after is not None:
            where.append(Cond("created_at", "gte", self.created_after))
        if self.created_before is not None:
            where.append(Cond("created_at", "lt", self.created_before))
        after = decode_cursor(self.cursor, self.sort) if self.cursor else None
        # One row more than asked tells whether there is a next page.
        return Query("issue_summary", tuple(where), ORDER[self.sort], after, self.limit + 1)

    def page(self, rows: list[Doc]) -> tuple[list[Doc], str | None]:
        items = rows[: self.limit]
        more = len(rows) > self.limit
        return items, encode_cursor(items[-1], self.sort) if more and items else None


def encode_cursor(last: Doc, sort: str) -> str:
    values = [last[field] for field, _ in ORDER[sort]]
    return base64.urlsafe_b64encode(orjson.dumps([sort, *values])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, ...]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise BadCursor("the cursor is not one this API gave out") from None
    if not isinstance(data, list) or len(data) != len(ORDER[sort]) + 1 or data[0] != sort:
        raise BadCursor("the cursor belongs to another sort order; start again without it")
    return tuple(data[1:])
