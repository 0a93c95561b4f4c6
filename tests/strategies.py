"""Hypothesis strategies: random but valid histories, made by running random commands through the domain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from command_api import commands as c
from command_api.aggregates import envelopes
from command_api.domain import issue as i
from command_api.domain import user as u
from command_api.domain.actor import CITIZEN, STAFF, Actor
from command_api.domain.errors import DomainError
from events.envelope import Envelope, Metadata, Position
from events.upcasting import decode
from projectors.ports import Doc
from projectors.projection import Projection

ACTORS = [Actor(f"user-{n}", frozenset({CITIZEN} | ({STAFF} if n == 0 else set()))) for n in range(4)]
ISSUES = ["issue-a", "issue-b", "issue-c"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def _issue_command(draw: st.DrawFn, issue_id: str) -> c.IssueCommand:
    kind = draw(st.sampled_from(["edit", "status", "assign", "comment", "upvote", "unvote", "sub", "unsub", "dup"]))
    if kind == "edit":
        return c.EditIssue(issue_id, title=draw(st.sampled_from(["Hole", "Big hole", None])))
    if kind == "status":
        return c.ChangeStatus(issue_id, draw(st.sampled_from(i.STATUSES)), draw(st.sampled_from([None, "ok"])))
    if kind == "assign":
        return c.AssignIssue(issue_id, draw(st.sampled_from(["roads", "parks"])))
    if kind == "comment":
        return c.CommentOnIssue(issue_id, f"c{draw(st.integers(0, 10**6))}", "a comment")
    if kind == "dup":
        return c.MarkDuplicate(issue_id, draw(st.sampled_from(ISSUES)))
    return {
        "upvote": c.UpvoteIssue,
        "unvote": c.WithdrawUpvote,
        "sub": c.SubscribeToIssue,
        "unsub": c.UnsubscribeFromIssue,
    }[kind](issue_id)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 40) -> list[Envelope]:
    """A log of user and issue events as the domain would record them, with positions 1..n."""
    log: list[Envelope] = []
    states = {issue_id: i.Issue(id=issue_id) for issue_id in ISSUES}
    now = START

    def record(aggregate_type: str, aggregate_id: str, version: int, events: list, actor: Actor) -> None:
        for env in envelopes(aggregate_type, aggregate_id, version, events, Metadata(actor.user_id, "corr"), now):
            log.append(env.at(Position(0, len(log) + 1)))

    for actor in ACTORS:
        record(
            "user",
            actor.user_id,
            0,
            u.register(c.RegisterUser(f"{actor.user_id}@x.org", "pw", actor.user_id, tuple(actor.roles)), "hash"),
            actor,
        )
    for _ in range(draw(st.integers(1, max_steps))):
        now += timedelta(minutes=draw(st.integers(1, 60 * 24 * 10)))
        actor = draw(st.sampled_from(ACTORS))
        issue_id = draw(st.sampled_from(ISSUES))
        state = states[issue_id]
        try:
            if not state.exists:
                cmd = c.ReportIssue(issue_id, "Hole", "Deep", "pothole", 51.5, -0.1)
                events = i.report(cmd, actor, "roads")
            else:
                events = i.decide(state, _issue_command(draw, issue_id), actor, now)
        except DomainError:
            continue
        record("issue", issue_id, state.version, events, actor)
        for event in events:
            state = replace(i.evolve(state, event, now), version=state.version + 1)
        states[issue_id] = state
    return log


def deliver(
    projection: Projection, views: dict[tuple[str, str], Doc], env: Envelope, *, rollups_only: bool = False
) -> None:
    """What the runner does with one event: fold the document, roll each aggregate it moves (written first).

    ``rollups_only`` stops after the roll-ups, as a crash between the two writes would.
    """
    doc_id = projection.key(env)
    if doc_id is None:
        return
    old = views.get((projection.name, doc_id))
    new = projection.fold(old, env, decode(env))
    if new is old:
        return
    (rollup,) = projection.rollups
    for key in rollup.keys(old, new):
        slot = (rollup.collection.name, key)
        rolled = rollup.fold(views.get(slot), key, old, new, env)
        if rolled is not None:
            views[slot] = rolled
    if new is not None and not rollups_only:
        views[(projection.name, doc_id)] = new
