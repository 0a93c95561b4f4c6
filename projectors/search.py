"""Search terms: the one tokenizer that both the summary fold and the query API use.

Text is NFKD-normalised, stripped of combining marks (accent folding: ``Café`` is
``cafe``), case-folded and split on anything that is not a letter or a digit. A
document stores the set of its terms in an array field; a query matches every
whole word with ``contains`` and its last word with ``prefix`` (search as you
type). Stores compare terms as plain strings, so SQLite and MongoDB agree.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable
from importlib import resources

from projectors.ports import Cond

MIN_TERM = 2  # one-letter words match too much to be worth an index entry
MAX_TERM = 32  # longer "words" are noise (URLs, hashes); cut them to a prefix
MAX_TERMS = 200  # a bound on one document's index entries
MAX_QUERY_WORDS = 8
SPLIT = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """Lower-case ASCII-ish text: accents removed, ligatures expanded, case folded."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", bare).replace("ß", "ss").replace("ı", "i")


def words(text: str) -> list[str]:
    """The words of ``text`` in order, folded, each cut to MAX_TERM characters (short ones kept)."""
    return [w[:MAX_TERM] for w in SPLIT.split(fold(text)) if w]


def terms(*texts: str | None) -> list[str]:
    """The sorted, distinct search terms of a document's texts, at most MAX_TERMS of them."""
    found: dict[str, None] = {}
    for text in texts:
        for word in words(text or ""):
            if len(word) >= MIN_TERM:
                found.setdefault(word, None)
                if len(found) >= MAX_TERMS:
                    return sorted(found)
    return sorted(found)


def conditions(query: str, field: str = "terms") -> tuple[Cond, ...]:
    """Conditions matching documents that hold every word of ``query``, the last one as a prefix.

    Words shorter than MIN_TERM cannot be whole-word matches (they are never stored);
    a short last word still works as a prefix. An empty query gives no conditions.
    """
    found = words(query)[:MAX_QUERY_WORDS]
    if not found:
        return ()
    *whole, last = found
    conds = [Cond(field, "contains", w) for w in dict.fromkeys(whole) if len(w) >= MIN_TERM]
    if last not in whole or len(last) < MIN_TERM:
        conds.append(Cond(field, "prefix", last))
    return tuple(conds)


def matches(doc_terms: Iterable[str], query: str) -> bool:
    """What ``conditions`` asks of a store, evaluated in memory (the reference for tests)."""
    held = set(doc_terms)
    for cond in conditions(query):
        if cond.op == "contains" and cond.value not in held:
            return False
        if cond.op == "prefix" and not any(t.startswith(cond.value) for t in held):
            return False
    return True


@functools.cache
def _seed_category_names() -> dict[str, str]:
    """The names of the seed catalogue's categories (a read-only data file, read once)."""
    try:
        raw = resources.files("command_api").joinpath("data/categories.json").read_text(encoding="utf-8")
        return {item["code"]: item["name"] for item in json.loads(raw)}
    except (OSError, ValueError, KeyError, TypeError, ModuleNotFoundError):
        return {}


def category_words(code: str) -> str:
    """What a category is called, for search: its code's words and, for seed categories, its name.

    The summary fold sees issue events only, so a category an admin defines later is
    searchable by its code; its display name would need the catalogue in the fold.
    """
    return f"{code.replace('-', ' ')} {_seed_category_names().get(code, '')}"
