"""The view-store contract: every ViewStore adapter stores, queries and commits the same way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from projectors.mongo_views import MongoViewStore
from projectors.ports import (
    Collection,
    Cond,
    Delete,
    GenerationMoved,
    Generations,
    Put,
    Query,
    ViewStore,
    ViewStoreError,
    at_generation,
    builder_name,
)
from projectors.sqlite_views import SqliteViewStore
from tests.contract.backends import require_engine, sqlite_url

MONGO_URL = "mongodb://127.0.0.1:27017"

THINGS = Collection(
    name="things",
    fields={"colour": "text", "size": "int", "weight": "real", "made": "text"},
    arrays=("tags",),
    indexes=(("colour", "-size", "-id"), ("-made", "-id")),
)


@pytest.fixture(params=["sqlite", pytest.param("mongodb", marks=pytest.mark.engines)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ViewStore]:
    if request.param == "mongodb":
        require_engine("mongodb")
        async with mongo_database() as url:
            views: ViewStore = MongoViewStore(url)
            await views.setup([THINGS])
            yield views
            await views.close()
        return
    views = SqliteViewStore(sqlite_url(tmp_path, "views"))
    await views.setup([THINGS])
    yield views
    await views.close()


@asynccontextmanager
async def mongo_database() -> AsyncIterator[str]:
    """A fresh database for one test, dropped afterwards, so tests never see each other's documents."""
    name = f"snapfix_test_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient[dict] = AsyncMongoClient(MONGO_URL, serverSelectionTimeoutMS=2000)
    try:
        yield f"{MONGO_URL}/{name}"
    finally:
        await client.drop_database(name)
        await client.close()


def thing(i: int, colour: str = "red", tags: tuple[str, ...] = ()) -> dict:
    return {
        "id": f"t{i:03d}",
        "colour": colour,
        "size": i % 5,
        "weight": i / 2,
        "made": f"2026-01-{i % 28 + 1:02d}",
        "tags": list(tags),
        "nested": {"k": [i, {"deep": True}]},
    }


async def fill(store: ViewStore, n: int) -> list[dict]:
    docs = [thing(i, "red" if i % 2 else "blue", ("even",) if i % 2 == 0 else ("odd", f"n{i}")) for i in range(n)]
    await store.commit("p", [Put("things", d) for d in docs], {0: n})
    return docs


class TestDocuments:
    async def test_a_put_document_comes_back_unchanged(self, store: ViewStore) -> None:
        """Documents round-trip, nested values included."""
        doc = thing(1, tags=("a", "b"))
        await store.commit("p", [Put("things", doc)], {0: 1})
        assert await store.get("things", "t001") == doc

    async def test_a_missing_document_is_none(self, store: ViewStore) -> None:
        """get of an unknown id is None; get_many leaves it out."""
        assert await store.get("things", "nope") is None
        assert await store.get_many("things", ["nope"]) == {}

    async def test_get_many_returns_the_existing_ones_by_id(self, store: ViewStore) -> None:
        """get_many finds every existing id, duplicates in the request included."""
        await fill(store, 5)
        found = await store.get_many("things", ["t001", "t003", "t003", "zzz"])
        assert sorted(found) == ["t001", "t003"]
        assert found["t003"]["size"] == 3

    async def test_a_put_replaces_and_a_delete_removes(self, store: ViewStore) -> None:
        """A later put of the same id replaces the document and its array values; delete removes it."""
        await store.commit("p", [Put("things", thing(1, tags=("old",)))], {0: 1})
        await store.commit("p", [Put("things", {**thing(1, tags=("new",)), "colour": "green"})], {0: 2})
        assert (await store.get("things", "t001") or {})["colour"] == "green"
        assert await store.find(Query("things", (Cond("tags", "contains", "old"),))) == []
        assert len(await store.find(Query("things", (Cond("tags", "contains", "new"),)))) == 1
        await store.commit("p", [Delete("things", "t001")], {0: 3})
        assert await store.get("things", "t001") is None
        assert await store.find(Query("things", (Cond("tags", "contains", "new"),))) == []

    async def test_an_undeclared_collection_is_an_error(self, store: ViewStore) -> None:
        """Asking for a collection nobody set up raises ViewStoreError rather than returning nothing."""
        with pytest.raises(ViewStoreError):
            await store.get("unknown", "x")


class TestCheckpoints:
    async def test_the_checkpoint_moves_with_the_commit(self, store: ViewStore) -> None:
        """commit stores the projector's checkpoint, per partition, and a later commit moves it."""
        name = f"proj-{uuid.uuid4().hex[:6]}"
        assert await store.checkpoint(name) == {}
        await store.commit(name, [Put("things", thing(1))], {0: 5, 1: 7})
        await store.commit(name, [], {1: 9})
        assert await store.checkpoint(name) == {0: 5, 1: 9}

    async def test_drop_empties_the_collections_and_forgets_the_checkpoint(self, store: ViewStore) -> None:
        """After drop, the view is empty and the projector starts from zero."""
        await fill(store, 4)
        await store.drop(["things"], "p")
        assert await store.count("things") == 0
        assert await store.checkpoint("p") == {}
        assert await store.find(Query("things", (Cond("tags", "contains", "even"),))) == []


class TestQueries:
    async def test_equality_and_membership_filters(self, store: ViewStore) -> None:
        """eq, ne and in select exactly the matching documents."""
        await fill(store, 10)
        reds = await store.find(Query("things", (Cond("colour", "eq", "red"),), limit=100))
        assert sorted(d["id"] for d in reds) == [f"t{i:03d}" for i in range(1, 10, 2)]
        not_red = await store.find(Query("things", (Cond("colour", "ne", "red"),), limit=100))
        assert len(not_red) == 5
        sizes = await store.find(Query("things", (Cond("size", "in", [0, 4]),), limit=100))
        assert sorted(d["id"] for d in sizes) == ["t000", "t004", "t005", "t009"]
        assert await store.find(Query("things", (Cond("size", "in", []),))) == []

    async def test_range_filters_on_numbers_and_text(self, store: ViewStore) -> None:
        """gt, gte, lt and lte compare numbers as numbers and ISO strings in order."""
        await fill(store, 10)
        heavy = await store.find(Query("things", (Cond("weight", "gte", 3.0), Cond("weight", "lt", 4.0)), limit=99))
        assert sorted(d["id"] for d in heavy) == ["t006", "t007"]
        early = await store.find(Query("things", (Cond("made", "lte", "2026-01-02"),), limit=99))
        assert sorted(d["id"] for d in early) == ["t000", "t001"]
        assert await store.count("things", (Cond("size", "gt", 3),)) == 2

    async def test_array_contains_and_prefix(self, store: ViewStore) -> None:
        """contains matches an array element; prefix matches elements starting with the value."""
        await fill(store, 12)
        evens = await store.find(Query("things", (Cond("tags", "contains", "even"),), limit=99))
        assert len(evens) == 6
        n1x = await store.find(Query("things", (Cond("tags", "prefix", "n1"),), limit=99))
        assert sorted(d["id"] for d in n1x) == ["t001", "t011"]

    async def test_order_and_limit(self, store: ViewStore) -> None:
        """Results follow order_by, id breaking ties, and stop at limit."""
        await fill(store, 10)
        rows = await store.find(Query("things", order_by=(("size", True), ("id", True)), limit=4))
        assert [d["id"] for d in rows] == ["t009", "t004", "t008", "t003"]

    async def test_keyset_pages_cover_everything_once_in_any_direction_mix(self, store: ViewStore) -> None:
        """Following `after` page by page visits every match exactly once, in order."""
        await fill(store, 23)
        for order in ((("size", True), ("id", False)), (("made", False), ("id", True)), (("id", False),)):
            seen: list[str] = []
            after = None
            while True:
                page = await store.find(Query("things", (Cond("colour", "eq", "red"),), order, after, 4))
                seen += [d["id"] for d in page]
                if len(page) < 4:
                    break
                after = tuple(page[-1][f] for f, _ in order)
            expected = await store.find(Query("things", (Cond("colour", "eq", "red"),), order, None, 100))
            assert seen == [d["id"] for d in expected]
            assert len(seen) == 11

    async def test_count_with_and_without_filters(self, store: ViewStore) -> None:
        """count agrees with find."""
        await fill(store, 9)
        assert await store.count("things") == 9
        assert await store.count("things", (Cond("tags", "contains", "odd"),)) == 4


class _AnyTime(str):
    """Equal to any recorded time."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    __hash__ = str.__hash__


ANY_TIME = _AnyTime()


class TestGenerations:
    async def test_a_collection_never_rebuilt_is_at_generation_zero(self, store: ViewStore) -> None:
        """The alias record of an untouched collection: live 0, nothing building, nothing retired."""
        assert await store.generations("things") == Generations()

    async def test_a_building_generation_is_resumed_not_restarted(self, store: ViewStore) -> None:
        """begin_generation twice gives the same shadow generation, with what was written to it kept."""
        first = await store.begin_generation(THINGS)
        await store.commit(builder_name("things", first), [Put(at_generation("things", first), thing(1))], {0: 1})
        again = await store.begin_generation(THINGS)
        assert again == first == 1
        assert await store.get(at_generation("things", again), "t001") is not None
        assert await store.generations("things") == Generations(live=0, building=1)

    async def test_readers_follow_the_alias_only_after_the_swap(self, store: ViewStore) -> None:
        """A shadow generation fills unseen; the swap makes it what plain names read, atomically."""
        await fill(store, 3)
        shadow = await store.begin_generation(THINGS)
        rebuilt = {**thing(1), "colour": "rebuilt"}
        await store.commit(builder_name("things", shadow), [Put(at_generation("things", shadow), rebuilt)], {0: 3})
        assert (await store.get("things", "t001") or {})["colour"] == "red"
        assert await store.swap({"things": shadow}, builder_name("things", shadow), "p")
        assert await store.get("things", "t001") == rebuilt
        assert await store.count("things") == 1
        assert [d["id"] for d in await store.find(Query("things", (Cond("colour", "eq", "rebuilt"),)))] == ["t001"]
        assert await store.count(at_generation("things", 0)) == 3  # the old one serves stragglers until dropped
        generations = await store.generations("things")
        assert (generations.live, generations.building, generations.retired) == (shadow, None, 0)
        assert generations.swapped_at is not None

    async def test_the_swap_waits_until_the_builder_has_caught_up_with_the_leader(self, store: ViewStore) -> None:
        """A builder behind the live projector on any partition may not swap; level or ahead, it may."""
        await store.commit("live", [], {0: 10, 1: 4})
        shadow = await store.begin_generation(THINGS)
        await store.commit(builder_name("things", shadow), [], {0: 10, 1: 3})
        assert not await store.swap({"things": shadow}, builder_name("things", shadow), "live")
        assert (await store.generations("things")).live == 0
        await store.commit(builder_name("things", shadow), [], {0: 12, 1: 4})
        assert await store.swap({"things": shadow}, builder_name("things", shadow), "live")

    async def test_commits_through_the_plain_name_land_in_the_live_generation(self, store: ViewStore) -> None:
        """After a swap, the live projector's writes go to the new generation, not the retired one."""
        shadow = await store.begin_generation(THINGS)
        assert await store.swap({"things": shadow}, builder_name("things", shadow), "nobody")
        await store.commit("live", [Put("things", thing(7, tags=("seven",)))], {0: 1})
        assert await store.get(at_generation("things", shadow), "t007") is not None
        assert await store.get(at_generation("things", 0), "t007") is None
        assert len(await store.find(Query("things", (Cond("tags", "contains", "seven"),)))) == 1

    async def test_a_commit_folded_before_a_swap_writes_nothing_after_it(self, store: ViewStore) -> None:
        """A batch that read the old live generation may not land in the new one (it would carry the old fold)."""
        await fill(store, 1)
        seen = await store.live_generations(["things"])
        assert seen == {"things": 0}
        shadow = await store.begin_generation(THINGS)
        assert await store.swap({"things": shadow}, builder_name("things", shadow), "nobody")
        with pytest.raises(GenerationMoved):
            await store.commit("p", [Put("things", thing(7))], {0: 9}, live=seen)
        assert await store.get("things", "t007") is None
        assert await store.get(at_generation("things", 0), "t007") is None
        assert await store.checkpoint("p") == {0: 1}
        assert await store.live_generations(["things"]) == {"things": shadow}
        await store.commit("p", [Put("things", thing(7))], {0: 9}, live={"things": shadow})
        assert await store.get("things", "t007") is not None

    async def test_a_retired_generation_can_be_dropped_and_the_live_one_cannot(self, store: ViewStore) -> None:
        """drop_generation removes a retired generation and its builder's checkpoint; the live one is refused."""
        await fill(store, 2)
        shadow = await store.begin_generation(THINGS)
        await store.commit(builder_name("things", shadow), [Put(at_generation("things", shadow), thing(5))], {0: 2})
        assert await store.swap({"things": shadow}, builder_name("things", shadow), "p")
        with pytest.raises(ViewStoreError):
            await store.drop_generation("things", shadow)
        await store.drop_generation("things", 0)
        assert await store.generations("things") == Generations(live=shadow, swapped_at=ANY_TIME)
        assert await store.checkpoint(builder_name("things", shadow)) == {0: 2}  # the live builder's stays
        assert await store.count("things") == 1
        assert await store.begin_generation(THINGS) == shadow + 1

    async def test_a_view_and_its_rollups_swap_together(self, store: ViewStore) -> None:
        """Several collections built by one builder become live in one step, each from its own generation."""
        others = Collection(name="others", fields={"colour": "text"})
        await store.setup([others])
        first = await store.begin_generation(others)
        assert await store.swap({"others": first}, builder_name("others", first), "p")
        things, more = await store.begin_generation(THINGS), await store.begin_generation(others)
        assert await store.swap({"things": things, "others": more}, builder_name("things", things), "p")
        assert ((await store.generations("things")).live, (await store.generations("others")).live) == (1, 2)
