"""Browse feeds: the first issues of the popular browse lists, kept in order by the summary's projector.

Most browsing asks for the first page of a few lists (``FEEDS``): the newest issues, of
all or of one status, category or department; the most upvoted; the recently updated,
of all or of one department. A feed is one small document per such list (``newest``,
``newest:status=reported``, ``updated:department=roads``, ...) holding the
list's first issues as public summaries. Reading a page is then one lookup by id, which
every store (FerretDB v1 too, which sorts nothing itself) answers fast, and which the
projector writes through to the cache after each change, so readers hit it.

A feed is exact up to its ``bound``: it holds *every* issue of its list that ranks at or
before ``bound`` (all of them when ``bound`` is None), in order. Each change of a summary
keeps that true without reading anything else:

- the issue's old entry goes (whatever it was, so a replay does the same again);
- its new entry comes in if it belongs to the list and ranks at or before ``bound``
  (after it, the feed cannot know what lies between);
- past ``FEED_SIZE`` entries the last ones go and ``bound`` moves up to the last kept.

A feed therefore shrinks when issues leave its list and refills from the top as new
ones rank first (a new issue, an upvote, an update). A page is served from a feed only
when the feed holds it whole, and only once the feeds are known to have been built from the
log's start (``ORIGIN``); otherwise the query goes to the summary view as before.

The fold depends only on the feed and the new summary, never on the old one (which a
replay after a crash may see stale), so replaying an event leaves the feed as it was.

The entries are kept as one JSON text: FerretDB v1 decodes and encodes every field of
every nested document, about 150 µs per entry (8 ms to read or replace a 50-entry feed,
measured), while one string costs it 1 ms. Every store keeps the text as it is. While a
projector folds a batch, a feed holds its entries as a list instead (``fold_feed`` takes
either form and returns the list), so a feed that a batch changes a hundred times is decoded
once and encoded once (``stored_feed``), not a hundred times.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from events.envelope import Envelope
from projectors.ports import Collection, Doc
from projectors.projection import marked

FEED_SIZE = 50  # serves first pages of up to 49 issues (one more row tells whether a next page exists)
FEED_ORDER: dict[str, tuple[str, ...]] = {  # every feed order is descending, ties broken by id
    "newest": ("created_at", "id"),
    "upvotes": ("upvotes", "id"),
    "updated": ("updated_at", "id"),
}
# The lists kept as feeds: those of the original design's traffic mix (bench/workload.py), which
# are what citizens and staff browse most. Each is (order, filtered field or None for all issues);
# every feed an issue is on costs a document write when it changes, which FerretDB makes dear.
FEEDS: tuple[tuple[str, str | None], ...] = (
    ("newest", None),
    ("newest", "status"),
    ("newest", "category"),
    ("newest", "department"),
    ("upvotes", None),
    ("updated", None),
    ("updated", "department"),  # a department's work queue
)
FEED_FILTERS = ("status", "category", "department")
feed_collection = Collection(name="issue_feed")
# The record the runner writes when it builds the feeds from the log's start (projectors/projection.py,
# ``Rollup.origin``): without it, feeds added to an existing deployment would be served from part of the log.
ORIGIN = "_from_start"


def feed_id(sort: str, field: str | None = None, value: str | None = None) -> str:
    return sort if field is None else f"{sort}:{field}={value}"


def _parse(key: str) -> tuple[str, str | None, str | None]:
    sort, _, condition = key.partition(":")
    if not condition:
        return sort, None, None
    field, _, value = condition.partition("=")
    return sort, field, value


def rank(entry: Doc, sort: str) -> tuple[Any, ...]:
    """The entry's place in a feed of ``sort``: higher ranks first."""
    return tuple(entry[f] for f in FEED_ORDER[sort])


def _listed(summary: Doc | None) -> bool:
    return summary is not None and not summary.get("hidden", False)


def feed_keys(old: Doc | None, new: Doc | None) -> Iterable[str]:
    """The feeds that list the issue before or after the change."""
    keys: dict[str, None] = {}
    for summary in (old, new):
        if summary is not None and _listed(summary):
            for sort, field in FEEDS:
                if field is None:
                    keys[feed_id(sort)] = None
                elif summary.get(field) is not None:
                    keys[feed_id(sort, field, summary[field])] = None
    return keys


def entry_of(summary: Doc, hidden_fields: frozenset[str]) -> Doc:
    """The issue as the feed lists it: its public summary."""
    return {k: v for k, v in summary.items() if k not in hidden_fields}


def fold_feed(
    feed: Doc | None,
    key: str,
    new: Doc | None,
    issue_id: str,
    hidden_fields: frozenset[str],
    size: int = FEED_SIZE,
    env: Envelope | None = None,
) -> Doc | None:
    """The feed after the issue became ``new`` (None: gone); the same object when nothing changed.

    With ``env``, a changed feed also records where in the log it last changed (``marks``)
    and the version they make (projectors/projection.py ``marked``): a feed that has folded
    more of the log has a version at least as high, and a higher one if it differs.
    """
    sort, field, value = _parse(key)
    entries = _entries(feed)
    bound: list[Any] | None = None if feed is None else feed["bound"]
    kept = [e for e in entries if e["id"] != issue_id]
    if new is not None and _listed(new) and (field is None or new.get(field) == value):
        entry = entry_of(new, hidden_fields)
        place = rank(entry, sort)
        if bound is None or place >= tuple(bound):
            at = next((i for i, e in enumerate(kept) if rank(e, sort) < place), len(kept))
            kept.insert(at, entry)
    if len(kept) > size:
        kept = kept[:size]
        bound = list(rank(kept[-1], sort))
    if feed is not None and kept == entries and bound == feed["bound"]:
        return feed  # nothing to write: most changes of an issue move none of its feeds
    marks: dict[str, int] = {} if feed is None else feed.get("marks", {})
    version = 0 if feed is None else feed.get("version", 0)
    if env is not None:
        marks, version = marked(marks, env)
    return {"id": key, "entries": kept, "bound": bound, "marks": marks, "version": version}


def stored_feed(feed: Doc) -> Doc:
    """The feed as the stores keep it: its entries as one JSON text (see the module docstring)."""
    entries = feed.get("entries")
    if isinstance(entries, str) or entries is None:
        return feed
    text = orjson.dumps(entries).decode()
    _decoded.keep(text, entries)  # the next batch, and the readers of this process, read it back
    return {**feed, "entries": text}


def entries_of(feed: Doc | None) -> list[Doc]:
    """The feed's entries, in order, from either form (a list of its own)."""
    return list(_entries(feed))


def _entries(feed: Doc | None) -> list[Doc]:
    """The feed's entries, not copied: a fold builds a new list and never changes this one."""
    if feed is None:
        return []
    entries = feed["entries"]
    return _decoded(entries) if isinstance(entries, str) else entries  # type: ignore[no-any-return]


class _Decoded:
    """Feeds' stored entries, decoded once per content, and the texts this process just encoded.

    Every live batch and every browse hit reads the same few dozen feeds, and decoding one
    (about 25 kB) costs far more than finding it here. The lists are shared between callers:
    never change them or their entries (``entries_of`` gives a copy).
    """

    def __init__(self, size: int = 256) -> None:  # a few hundred feeds: every entry is one the GC walks
        self._known: OrderedDict[str, list[Doc]] = OrderedDict()
        self._size = size

    def __call__(self, text: str) -> list[Doc]:
        entries = self._known.get(text)
        if entries is None:
            entries = orjson.loads(text)
            self.keep(text, entries)
        else:
            self._known.move_to_end(text)
        return entries

    def keep(self, text: str, entries: list[Doc]) -> None:
        self._known[text] = entries
        while len(self._known) > self._size:
            self._known.popitem(last=False)


_decoded = _Decoded()


def page(feed: Doc | None, sort: str, after: Sequence[Any] | None, rows: int) -> list[Doc] | None:
    """The next ``rows`` entries after the cursor position ``after`` (or fewer at the list's end).

    None when the feed cannot tell: its known part ends before the page does. A missing feed
    is an empty list: no listed issue was ever on it (callers read feeds only once they are
    known to be built from the log's start, ``ORIGIN``).
    """
    if feed is None:
        return []
    entries = entries_of(feed)
    if after is not None:
        position = tuple(after)
        entries = [e for e in entries if rank(e, sort) < position]
    if len(entries) >= rows:
        return entries[:rows]
    return entries if feed["bound"] is None else None
