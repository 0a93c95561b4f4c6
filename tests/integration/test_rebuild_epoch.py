"""Who ends the caches' epoch after a swap when the rebuild runs as its own process, ``snapfix rebuild``.

tests/integration/test_rebuild_caches.py proves the epoch itself, with ``rebuild`` called in the
app's process. Here:

* ``snapfix rebuild`` on a deployment whose cache is shared (Redis) ends its epoch right after the
  swap, so what the live projector cached from the old generation is no longer served;
* with that cache down, the command says so and exits 1 without a traceback; the swap stands, and
  running the command again once the cache is back ends the epoch;
* the Kafka projector worker (``snapfix projectors``, the faust worker) checks the epoch on a timer,
  so a swap that the rebuild could not publish reaches Redis with no event on the topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs
from typer.testing import CliRunner

from events.kafka_log import KafkaTopic
from events.sqlite_log import SqliteEventLog
from ops.cli import app
from ops.rebuild import rebuild
from projectors.catalog import ALL
from projectors.kafka_worker import check_epoch
from projectors.ports import ViewStoreError
from projectors.runner import EPOCH_CHECK_S, ProjectionRunner
from projectors.sqlite_views import SqliteViewStore
from snapfix import bootstrap
from snapfix.bootstrap import MAIN_PROJECTOR
from snapfix.cache import VIEWS_EPOCH, Cache, ViewCache
from snapfix.redis_cache import RedisCache
from tests.contract.backends import require_engine
from tests.contract.test_cache import REDIS_URL, forget_keys
from tests.integration.test_distributed import base_env
from tests.integration.test_distributed_operations import _checkpoint, _drop, _head, kafka_env
from tests.integration.test_kafka_log_tools import _fill
from tests.integration.test_operations import REPORT, event
from tests.kafka_scratch import KAFKA
from tests.processes import Role, free_port

HISTORY = [
    event("a", 1, "IssueReported", REPORT, 0),
    event("a", 2, "IssueStatusChanged", {"from_status": "reported", "to_status": "acknowledged"}, 10),
    event("b", 1, "IssueReported", REPORT, 20),
]
DETAIL = ViewCache.key("issue_detail", "a")
WORKER_DEADLINE_S = 180.0
PUBLISHED_WITHIN_S = EPOCH_CHECK_S + 5  # about a second, with room for a busy machine


@dataclass
class Deployment:
    env: dict[str, str]
    prefix: str  # the cache's key prefix: this test's keys alone


def down_cache() -> str:
    """A Redis URL where nothing listens: the cache is down."""
    return f"redis://127.0.0.1:{free_port()}/0"


def open_redis(deployment: Deployment) -> RedisCache:
    return RedisCache(REDIS_URL, prefix=deployment.prefix)


async def cached_detail(cache: Cache) -> tuple[int, bytes | None]:
    """The epoch, and issue a's detail as the cache serves it in that epoch (None: not served)."""
    detail, epoch = await cache.get_current(DETAIL, VIEWS_EPOCH)
    await cache.close()
    return epoch, detail


def rebuild_cli(env: dict[str, str], view: str = "issue_detail") -> tuple[int, str, BaseException | None]:
    """``snapfix rebuild VIEW`` as an operator types it; its exit code, stderr and what it raised."""
    result = CliRunner().invoke(app, ["rebuild", view, "--grace", "0", "--no-progress"], env=env)
    structlog.reset_defaults()  # the command pointed its logs at the runner's stderr, closed now
    raised = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.stderr, raised


@pytest.fixture
def few_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild tries the cache twice after its swap, not for ten seconds."""
    assert rebuild.__kwdefaults__ is not None
    monkeypatch.setitem(rebuild.__kwdefaults__, "publish_tries", 2)


# --- snapfix rebuild on the embedded deployment with a shared cache ------------------------------------


def embedded(tmp_path: Path, cache: str, prefix: str = "") -> Deployment:
    """A SQLite log and views holding HISTORY, folded by the live projector (written through when on Redis)."""
    env = base_env(
        event_log=f"sqlite:///{tmp_path}/events.db",
        view_store=f"sqlite:///{tmp_path}/views.db",
        cache=cache,
        cache_prefix=prefix,
    )
    deployment = Deployment(env, prefix)

    async def fill() -> None:
        log = SqliteEventLog(env["SNAPFIX_EVENT_LOG"])
        await log.open()
        for e in HISTORY:
            await log.append(e.aggregate_id, e.aggregate_version - 1, [e])
        views = SqliteViewStore(env["SNAPFIX_VIEW_STORE"])
        live = open_redis(deployment) if cache == REDIS_URL else None
        runner = ProjectionRunner(
            MAIN_PROJECTOR, ALL, log, views, cache=live, view_cache=ViewCache(live, 300) if live else None
        )
        await runner.setup()
        await runner.catch_up()
        if live is not None:
            await live.close()
        await views.close()
        await log.close()

    asyncio.run(fill())
    return deployment


def live_generation(deployment: Deployment, view: str) -> int:
    async def read() -> int:
        views = SqliteViewStore(deployment.env["SNAPFIX_VIEW_STORE"])
        try:
            return (await views.generations(view)).live
        finally:
            await views.close()

    return asyncio.run(read())


@pytest.fixture
def on_redis(tmp_path: Path) -> Iterator[Deployment]:
    require_engine("redis")
    prefix = f"test-{uuid.uuid4().hex}:"
    try:
        yield embedded(tmp_path, REDIS_URL, prefix)
    finally:
        asyncio.run(forget_keys(prefix))


class TestRebuildCommand:
    @pytest.mark.engines
    def test_it_ends_the_shared_cache_epoch_at_the_swap(self, on_redis: Deployment) -> None:
        """Issue a's detail, cached by the live projector, is not served once `snapfix rebuild` returns."""
        before, detail = asyncio.run(cached_detail(open_redis(on_redis)))
        assert before >= 1
        assert detail is not None
        assert b"acknowledged" in detail
        code, err, raised = rebuild_cli(on_redis.env)
        assert (code, raised) == (0, None), err
        assert "issue_detail is live at generation 1" in err
        after, detail = asyncio.run(cached_detail(open_redis(on_redis)))
        assert after == before + 1
        assert detail is None

    @pytest.mark.usefixtures("few_tries")
    def test_a_cache_down_at_the_swap_is_a_clear_error_not_a_traceback(self, tmp_path: Path) -> None:
        """Exit 1 with what happened and what to do; the new generation is live all the same."""
        deployment = embedded(tmp_path, down_cache())
        code, err, raised = rebuild_cli(deployment.env)
        assert raised is None, err
        assert code == 1, err
        assert "snapfix: issue_detail is swapped, but the cache did not answer" in err
        assert "run the rebuild again" in err
        assert "Traceback" not in err
        assert live_generation(deployment, "issue_detail") == 1

    @pytest.mark.engines
    @pytest.mark.usefixtures("few_tries")
    def test_run_again_once_the_cache_is_back_it_ends_the_epoch(self, on_redis: Deployment) -> None:
        """The rerun finds the swap made and only publishes it: the old generation's detail is no longer served."""
        before, _ = asyncio.run(cached_detail(open_redis(on_redis)))
        code, err, _ = rebuild_cli({**on_redis.env, "SNAPFIX_CACHE": down_cache()})
        assert code == 1, err
        assert asyncio.run(cached_detail(open_redis(on_redis)))[0] == before
        code, err, raised = rebuild_cli(on_redis.env)
        assert (code, raised) == (0, None), err
        assert "(resumed)" in err
        after, detail = asyncio.run(cached_detail(open_redis(on_redis)))
        assert (after, detail) == (before + 1, None)

    def test_with_the_in_process_cache_it_opens_no_cache(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """memory:// belongs to another process: the rebuild swaps and leaves the epoch to the live projector."""
        deployment = embedded(tmp_path, "memory://")

        async def refused(_settings: object) -> Cache:
            raise AssertionError("the rebuild opened a cache of its own")

        monkeypatch.setattr(bootstrap, "open_cache", refused)
        code, err, raised = rebuild_cli(deployment.env)
        assert (code, raised) == (0, None), err
        assert live_generation(deployment, "issue_detail") == 1


# --- the Kafka projector worker's epoch timer --------------------------------------------------------


@pytest.fixture
def on_kafka(tmp_path: Path) -> Iterator[Deployment]:
    """A fresh topic holding HISTORY, fresh MongoDB views and a Redis prefix: the distributed deployment's env."""
    for engine in ("kafka", "mongodb", "redis"):
        require_engine(engine)
    tag = uuid.uuid4().hex[:10]
    topic = KafkaTopic(bootstrap=KAFKA, name=f"snapfix.test.{tag}", partitions=3)
    prefix = f"test-{tag}:"
    env = kafka_env(tag, topic, cache=REDIS_URL, cache_prefix=prefix, process_managers="false")
    try:
        asyncio.run(_fill(topic, env["SNAPFIX_WRITE_STORE"], HISTORY))
        yield Deployment(env, prefix)
    finally:
        asyncio.run(_drop(topic, env))
        asyncio.run(forget_keys(prefix))


def wait_for(what: str, ready: Callable[[], bool], worker: Role, deadline_s: float) -> float:
    """Poll ``ready()`` until true while the worker lives; returns the seconds it took."""
    started = time.monotonic()
    while not ready():
        assert worker.proc is not None
        assert worker.proc.poll() is None, worker.log_path.read_text()[-4000:]
        assert time.monotonic() - started < deadline_s, f"{what}:\n{worker.log_path.read_text()[-4000:]}"
        time.sleep(0.1)
    return time.monotonic() - started


class TestKafkaWorkerEpochTimer:
    @pytest.mark.engines
    @pytest.mark.usefixtures("few_tries")
    def test_a_swap_the_rebuild_could_not_publish_reaches_redis_with_no_event(
        self, on_kafka: Deployment, tmp_path: Path
    ) -> None:
        """The rebuild finds Redis down and fails; the idle worker publishes the swap within about a second."""
        env = on_kafka.env
        topic = KafkaTopic(KAFKA, name=env["SNAPFIX_KAFKA_TOPIC"], partitions=3)
        worker = Role("projectors", env, tmp_path / "worker.log").start()
        try:
            head = asyncio.run(_head(topic))

            def folded() -> bool:  # the views committed, then the detail written through in the worker's epoch
                checkpoint = asyncio.run(_checkpoint(env["SNAPFIX_VIEW_STORE"]))
                return checkpoint == head and asyncio.run(cached_detail(open_redis(on_kafka)))[1] is not None

            wait_for("folded", folded, worker, WORKER_DEADLINE_S)
            before, _ = asyncio.run(cached_detail(open_redis(on_kafka)))
            assert before >= 1

            code, err, raised = rebuild_cli({**env, "SNAPFIX_CACHE": down_cache()})
            assert (code, raised) == (1, None), err
            assert "issue_detail is swapped" in err
            wait_for(
                "the worker never published the swap",
                lambda: asyncio.run(cached_detail(open_redis(on_kafka)))[0] == before + 1,
                worker,
                PUBLISHED_WITHIN_S,
            )
            assert asyncio.run(cached_detail(open_redis(on_kafka))) == (before + 1, None)
            assert asyncio.run(_head(topic)) == head  # no event came to carry it
            assert asyncio.run(_checkpoint(env["SNAPFIX_VIEW_STORE"])) == head
        finally:
            worker.stop()
        assert worker.proc is not None
        assert worker.proc.returncode == 0, worker.log_path.read_text()[-4000:]  # stopped, timer and all
        logged = worker.log_path.read_text()
        assert "Traceback" not in logged, logged[-4000:]
        assert "projector.epoch_check_failed" not in logged, logged[-4000:]


class FailingRunner:
    """A runner whose epoch check meets a view store that does not answer."""

    name = MAIN_PROJECTOR

    def __init__(self) -> None:
        self.checks = 0

    async def check_epoch(self) -> int | None:
        self.checks += 1
        raise ViewStoreError("the view store did not answer")


class TestEpochCheck:
    async def test_an_error_is_logged_not_raised_and_the_next_tick_checks_again(self) -> None:
        """The timer's tick never takes the worker down: it says what failed, and runs again."""
        runner = FailingRunner()
        with capture_logs() as logs:
            await check_epoch(runner)  # type: ignore[arg-type]
            await check_epoch(runner)  # type: ignore[arg-type]
        assert runner.checks == 2
        failed = [e for e in logs if e["event"] == "projector.epoch_check_failed"]
        assert len(failed) == 2
        assert failed[0]["log_level"] == "warning"
        assert failed[0]["projector"] == MAIN_PROJECTOR
        assert "the view store did not answer" in failed[0]["reason"]

    async def test_before_the_agent_opened_the_runner_it_does_nothing(self) -> None:
        await check_epoch(None)
