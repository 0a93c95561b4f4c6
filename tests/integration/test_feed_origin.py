"""The feeds' origin record: written only by a projector that folds the log from its start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from events.sqlite_log import SqliteEventLog
from ops.seed import Plan, write
from projectors import feeds
from projectors.issue_views import issue_summary
from projectors.runner import ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from tests.contract.backends import sqlite_url


async def test_only_a_projector_starting_from_the_logs_start_vouches_for_its_feeds(tmp_path: Path) -> None:
    log = SqliteEventLog(sqlite_url(tmp_path, "events"))
    await log.open()
    await write(log, Plan(issues=5, users=3, seed=1), "hash")
    upgraded, fresh = SqliteViewStore(sqlite_url(tmp_path, "upgraded")), SqliteViewStore(sqlite_url(tmp_path, "fresh"))

    before = ProjectionRunner("main", [replace(issue_summary, rollups=())], log, upgraded)  # a release without feeds
    await before.setup()
    await before.catch_up()
    await write(log, Plan(issues=5, users=3, seed=2), "hash")
    after = ProjectionRunner("main", [issue_summary], log, upgraded)  # the release with them, mid-log
    await after.setup()
    assert await after.catch_up() > 0
    assert await upgraded.get(feeds.feed_collection.name, "newest") is not None  # feeds of part of the log...
    assert await upgraded.get(feeds.feed_collection.name, feeds.ORIGIN) is None  # ...that no reader trusts

    retry = ProjectionRunner("dead-letter-retry", [issue_summary], None, upgraded, partial=True)  # ops/dlq.py
    await retry.setup()
    await retry.apply(await log.read({}, 3))
    assert await upgraded.get(feeds.feed_collection.name, feeds.ORIGIN) is None  # a few events vouch for nothing

    whole = ProjectionRunner("main", [issue_summary], log, fresh)
    await whole.setup()
    await whole.catch_up()
    assert await fresh.get(feeds.feed_collection.name, feeds.ORIGIN) == {"id": feeds.ORIGIN, "from_start": True}
    for store in (upgraded, fresh):
        await store.close()
    await log.close()
