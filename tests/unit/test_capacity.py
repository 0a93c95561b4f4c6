"""The capacity model's arithmetic: per-core figures scaled out to a target load."""

from __future__ import annotations

import pytest

from ops.capacity import Figures, Shares, Targets, figures_from_results, plan, sustainable


def figures(**overrides: float) -> Figures:
    base = {
        "cached_read_rps": 1000.0, "browse_rps": 500.0, "command_rps": 200.0, "signin_per_s": 10.0,
        "health_rps": 2000.0, "projector_eps": 1000.0, "kafka_partition_msgs": 4000.0, "redis_ops": 50_000.0,
        "view_upserts": 10_000.0, "writes_per_event": 2.0, "cache_hit_ratio": 0.9, "headroom": 0.5,
        "session_s": 1000.0,
    }  # fmt: skip
    base.update(overrides)
    return Figures(**base, shares=Shares(cached_read=0.4, browse=0.2, command=0.2, argon2=0.1, health=0.1))


class TestPlan:
    def test_query_processes_add_the_core_seconds_of_each_read_kind(self) -> None:
        """10,000 rps: 4,000 cached (4 s), 2,000 browse (4 s), 1,000 health (0.5 s) = 8.5 core-s, /0.5 -> 17."""
        assert plan(Targets(10_000, 1000, 100), figures()).query_processes == 17

    def test_browse_hits_cost_what_a_cached_read_does(self) -> None:
        """Half the 2,000 browse/s hit: 1,000 at 1,000/s (1 s) and 1,000 at 500/s (2 s): 7.5 core-s, /0.5 -> 15.

        The misses, and only they, reach the view store; every browse request asks Redis first.
        """
        p = plan(Targets(10_000, 1000, 100), figures(browse_hit_ratio=0.5))
        assert p.query_processes == 15
        assert p.rates["view-store reads/s (cache misses)"] == pytest.approx(4000 * 0.1 + 1000)
        assert p.rates["redis ops/s"] == 4000 + 2000 + 4000

    def test_command_and_auth_processes_use_their_own_rates(self) -> None:
        """2,000 commands/s at 200*0.5 per core need 20; 1,000 sign-ins/s at 10*0.5 need 200."""
        p = plan(Targets(10_000, 1000, 100), figures())
        assert (p.command_processes, p.auth_processes) == (20, 200)

    def test_sign_ins_are_at_least_one_per_user_per_session(self) -> None:
        """With no argon2 share, 100,000 users over a 1,000 s session still sign in 100 times a second."""
        f = figures()
        f = Figures(**{**f.__dict__, "shares": Shares(0.4, 0.2, 0.3, 0.0, 0.1)})
        p = plan(Targets(10_000, 100_000, 100), f)
        assert p.rates["argon2 sign-ins and registrations/s"] == 100
        assert p.auth_processes == 20

    def test_projectors_partitions_and_engines_follow_the_event_rate(self) -> None:
        """2,000 events/s: 4 projectors, 8 partitions, 4,000 view writes/s, Redis carries reads and writes."""
        p = plan(Targets(10_000, 1000, 100), figures())
        assert p.projector_workers == 4
        assert p.kafka_partitions == 8
        assert p.rates["view writes/s"] == 4000
        assert p.rates["redis ops/s"] == 4000 + 2000 + 4000
        assert p.redis_shards == 1
        assert p.view_store_cores == 1

    def test_total_cores_is_the_sum_of_the_fleet(self) -> None:
        """Every process and engine core is counted once."""
        p = plan(Targets(10_000, 1000, 100), figures())
        assert p.total_cores == 17 + 20 + 200 + 4 + 1 + 1

    def test_a_missing_figure_is_an_error_not_a_division_by_zero(self) -> None:
        """A zero per-core figure means bench/run has not measured it."""
        with pytest.raises(ValueError, match="bench/run"):
            plan(Targets(10_000, 1000, 100), figures(command_rps=0.0))


class TestSustainable:
    def test_the_best_step_within_the_p99_target_wins(self) -> None:
        """Steps over the p99 target or with errors do not count."""
        curve = [
            {"throughput": 100, "p99_ms": 10, "success": 1.0},
            {"throughput": 200, "p99_ms": 90, "success": 1.0},
            {"throughput": 390, "p99_ms": 400, "success": 1.0},
            {"throughput": 250, "p99_ms": 20, "success": 0.5},
        ]
        assert sustainable(curve, 100, 0) == 200
        assert sustainable(curve, 5, 7) == 7


def test_figures_are_read_from_the_results_file_layout() -> None:
    """The harness's results.json gives per-core rates at the requested p99."""
    step = {"throughput": 300.0, "p99_ms": 30.0, "success": 1.0}
    results = {
        "paths": {"cached_read": {"curve": [step]}, "create_issue": {"curve": [{**step, "throughput": 100.0}]}},
        "ceilings": {"redis_benchmark_get": {"value": 9e4}, "kafka_produce_pipelined": {"value": 5e3},
                     "kafka_consume_drain": {"value": 2e4}, "sqlite_bulk_upsert": {"value": 3e4}},
        "projector": {"embedded": {"events_per_s": 800.0, "writes_per_event": 1.4}},
        "argon2": {"per_core_per_s": 12.0},
        "mix": {"cache_hit_ratio": 0.95, "cache_hit_ratios": {"overall": 0.95, "browse": 0.9, "views": 0.97}},
    }  # fmt: skip
    f = figures_from_results(results, 100)
    assert (f.cached_read_rps, f.browse_rps, f.command_rps, f.signin_per_s) == (300, 300, 100, 12)
    assert (f.kafka_partition_msgs, f.view_upserts) == (5e3, 3e4)
    assert (f.cache_hit_ratio, f.browse_hit_ratio) == (0.97, 0.9)
