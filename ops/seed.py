"""A realistic city's worth of users and issues, written to the event log as the domain would have.

Everything goes through the log as valid envelopes (versions 1..n per aggregate, the
current event classes), so the views are built by the real projectors. Issues cluster
around a few hotspots of a city box, categories are skewed (potholes and garbage
dominate), upvotes follow a Zipf law, and each issue gets a plausible history of
triage, assignment, comments and resolution over the past year. Deterministic for a
given ``seed``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from command_api.aggregates import envelopes
from command_api.domain.catalogue import CATALOGUE_ID, seed_commands
from events import types as e
from events.envelope import Envelope, Metadata
from events.ports import EventStore
from projectors import geo

# Greater London, roughly: 47 km by 45 km, no antimeridian.
CITY = geo.Box(51.28, -0.51, 51.69, 0.33)
HOTSPOTS = ((51.5074, -0.1278, 0.03), (51.5450, -0.0553, 0.02), (51.4613, -0.1156, 0.02), (51.5560, -0.2796, 0.025))
CATEGORY_WEIGHTS = {
    "pothole": 30,
    "garbage": 22,
    "streetlight": 14,
    "graffiti": 9,
    "sidewalk": 8,
    "water-leak": 6,
    "traffic-signal": 4,
    "tree": 3,
    "abandoned-vehicle": 2,
    "noise": 2,
}
STREETS = (
    "High Street",
    "Station Road",
    "Church Lane",
    "Victoria Road",
    "Green Lane",
    "Mill Road",
    "Park Avenue",
    "Queen's Road",
    "King Street",
    "Albert Embankment",
    "Café Row",
    "Main Street",
    "Old Kent Road",
)
ADJECTIVES = ("Deep", "Dangerous", "Broken", "Overflowing", "Huge", "Recurring", "Dark", "Blocked", "Noisy")
PLACES = ("near the school", "outside the station", "by the bus stop", "at the corner", "opposite the park")
SEED_PASSWORD = "seed password for load tests"  # every seeded user shares it, for load tests


@dataclass(frozen=True, slots=True)
class Plan:
    issues: int
    users: int
    seed: int = 42
    days: int = 365
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    box: geo.Box = CITY


def _point(rng: random.Random, box: geo.Box) -> tuple[float, float]:
    if rng.random() < 0.7:
        lat0, lon0, spread = rng.choice(HOTSPOTS)
        lat, lon = rng.gauss(lat0, spread), rng.gauss(lon0, spread * 1.6)
    else:
        lat, lon = rng.uniform(box.min_lat, box.max_lat), rng.uniform(box.min_lon, box.max_lon)
    return min(max(lat, box.min_lat), box.max_lat), min(max(lon, box.min_lon), box.max_lon)


def _zipf(rng: random.Random, a: float, cap: int) -> int:
    """A Zipf-distributed count in [0, cap]: most issues get none or a few upvotes, a handful get many."""
    return min(cap, int(rng.paretovariate(a - 1)) - 1)


def _ids(rng: random.Random, n: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


class Generator:
    """Turns a plan into aggregates and their envelopes, users first, then issues."""

    def __init__(self, plan: Plan, password_hash: str) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)  # noqa: S311 - synthetic data, reproducible by design
        self.password_hash = password_hash
        self.departments = {cmd.code: cmd.department for cmd in seed_commands()}
        self.categories = [c for c in CATEGORY_WEIGHTS if c in self.departments] or sorted(self.departments)
        self.weights = [CATEGORY_WEIGHTS.get(c, 1) for c in self.categories]
        self.user_ids = _ids(self.rng, plan.users)
        self.staff = self.user_ids[: max(1, plan.users // 50)]

    def users(self) -> Iterator[list[Envelope]]:
        start = self.plan.now - timedelta(days=self.plan.days + 30)
        for n, user_id in enumerate(self.user_ids):
            roles = ("citizen", "staff") if user_id in self.staff else ("citizen",)
            event = e.UserRegistered(
                email=f"seed-{n}@{self.plan.seed}.example.org",
                display_name=f"Resident {n}",
                password_hash=self.password_hash,
                roles=roles,
            )
            yield envelopes("user", user_id, 0, [event], Metadata(actor_id=user_id), start)

    def issues(self) -> Iterator[list[Envelope]]:
        for issue_id in _ids(self.rng, self.plan.issues):
            yield self._issue(issue_id)

    def _issue(self, issue_id: str) -> list[Envelope]:
        rng, plan = self.rng, self.plan
        category = rng.choices(self.categories, self.weights)[0]
        # reporters are Zipf-skewed too: a few active residents report a lot
        reporter = self.user_ids[min(len(self.user_ids) - 1, _zipf(rng, 1.6, len(self.user_ids)))]
        at = plan.now - timedelta(seconds=rng.uniform(0, plan.days * 86400))
        lat, lon = _point(rng, plan.box)
        street = rng.choice(STREETS)
        history: list[tuple[datetime, str, e.DomainEvent]] = []
        title = f"{rng.choice(ADJECTIVES)} {category.replace('-', ' ')} {rng.choice(PLACES)}"
        history.append(
            (
                at,
                reporter,
                e.IssueReported(
                    reporter_id=reporter,
                    title=title,
                    description=f"{title.capitalize()} on {street}. Reported by a resident.",
                    category=category,
                    department=self.departments[category],
                    lat=round(lat, 6),
                    lon=round(lon, 6),
                    address=f"{rng.randint(1, 250)} {street}",
                ),
            )
        )
        voters = rng.sample(self.user_ids, _zipf(rng, 2.0, min(len(self.user_ids), 500)))
        for voter in voters:
            history.append((at + timedelta(hours=rng.expovariate(1 / 48)), voter, e.IssueUpvoted(user_id=voter)))
        history += self._triage(at)
        history.sort(key=lambda h: h[0])
        history = [h for h in history if h[0] <= plan.now]
        out: list[Envelope] = []
        for version, (when, actor, event) in enumerate(history):
            out += envelopes("issue", issue_id, version, [event], Metadata(actor_id=actor), when)
        return out

    def _triage(self, at: datetime) -> list[tuple[datetime, str, e.DomainEvent]]:
        """A walk through the lifecycle with realistic delays; staff act, the reporter sometimes reopens."""
        rng = self.rng
        staff = rng.choice(self.staff)
        steps: list[tuple[datetime, str, e.DomainEvent]] = []
        status, when = "reported", at

        def move(to: str, mean_hours: float, note: str | None = None) -> None:
            nonlocal status, when
            when = when + timedelta(hours=rng.expovariate(1 / mean_hours))
            steps.append((when, staff, e.IssueStatusChanged(from_status=status, to_status=to, note=note)))
            status = to

        if rng.random() < 0.08:
            move("rejected", 30, "Not a council matter")
            return steps
        if rng.random() < 0.75:
            move("acknowledged", 20)
            if rng.random() < 0.1:
                when = when + timedelta(hours=2)
                dept = rng.choice(sorted(set(self.departments.values())))
                steps.append((when, staff, e.IssueAssigned(department=dept)))
            if rng.random() < 0.3:
                steps.append((when + timedelta(hours=1), staff, e.IssueCommented(
                    comment_id=str(uuid.UUID(int=rng.getrandbits(128))), author_id=staff,
                    body="A crew is booked.", by_staff=True)))  # fmt: skip
            if rng.random() < 0.7:
                move("in_progress", 60)
                if rng.random() < 0.8:
                    move("resolved", 90, "Fixed")
                    if rng.random() < 0.06:
                        move("reopened", 100, "Came back")
                        move("resolved", 60, "Fixed again")
                    if rng.random() < 0.5:
                        move("closed", 150)
        return steps


def catalogue_envelopes(now: datetime) -> list[Envelope]:
    events = [e.CategoryDefined(code=c.code, name=c.name, description=c.description, department=c.department)
              for c in seed_commands()]  # fmt: skip
    return envelopes("catalogue", CATALOGUE_ID, 0, events, Metadata(actor_id="system"), now)


async def write(
    store: EventStore, plan: Plan, password_hash: str, advance: Callable[[int], None] = lambda _: None
) -> int:
    """Append the plan's users and issues (and the catalogue, if the log has none); returns the events written."""
    generator = Generator(plan, password_hash)
    written = 0
    if not await store.load(CATALOGUE_ID):
        batch = catalogue_envelopes(plan.now - timedelta(days=plan.days + 60))
        await store.append(CATALOGUE_ID, 0, batch)
        written += len(batch)
    for stream in (generator.users(), generator.issues()):
        for batch in stream:
            await store.append(batch[0].aggregate_id, 0, batch)
            written += len(batch)
            advance(1)
    return written
