"""The workload: pre-registered users with tokens, pre-reported issues, and vegeta targets for each path and the mix.

The mix follows the original design: 40 % issue reporting (create, update, view),
30 % browsing (list, filter), 20 % user management (register, sign in, profile),
10 % health checks. Sign-in and registration hash with argon2 (tens of ms of CPU
each), so their share inside user management is what a real session rate gives:
a user signs in once a session. Token refresh is left out: refresh tokens rotate with
reuse detection, so a replayed target file would revoke the users' sessions.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
import orjson

from bench.loadgen import Result, Target, write_targets

PASSWORD = "correct horse battery staple"
CATEGORIES = ("pothole", "streetlight", "garbage", "graffiti", "water-leak", "sidewalk", "tree", "noise")
STATUSES = ("reported", "acknowledged")

# (class, share in percent): the original design's four groups, split into the requests they name
MIX: tuple[tuple[str, float], ...] = (
    ("issue.create", 10.0),
    ("issue.update", 4.0),
    ("issue.upvote", 3.0),
    ("issue.comment", 3.0),
    ("issue.view", 20.0),
    ("browse.list", 12.0),
    ("browse.filter_status", 6.0),
    ("browse.filter_category", 6.0),
    ("browse.sort_upvotes", 3.0),
    ("browse.filter_department", 3.0),
    ("user.profile_view", 16.25),
    ("user.profile_update", 3.0),
    ("user.sign_in", 0.5),
    ("user.register", 0.25),
    ("health.healthz", 7.0),
    ("health.readyz", 3.0),
)
GROUPS = {"issue": "issue reporting (40 %)", "browse": "browsing (30 %)", "user": "user management (20 %)",
          "health": "health checks (10 %)"}  # fmt: skip
WRITE_CLASSES = frozenset(
    {"issue.create", "issue.update", "issue.upvote", "issue.comment", "user.profile_update", "user.register"}
)
ARGON2_CLASSES = frozenset({"user.sign_in", "user.register"})


@dataclass
class User:
    email: str
    id: str = ""
    access: str = ""
    refresh: str = ""
    issues: list[str] = field(default_factory=list)


@dataclass
class World:
    """What the server holds before load starts, and where requests go.

    ``base`` takes the writes; ``reads`` (the query API, when the roles run apart) takes the GETs,
    as a load balancer splitting the shared paths by method would. Embedded, both are one server.

    The skew real traffic has: ``hot_issue`` already carries thousands of upvotes and keeps
    getting more (a quarter of the mix's upvotes), and ``editors`` are users who have edited
    their profile hundreds of times and make half of the profile edits. Upvoters beyond the
    registered users are a crowd whose access tokens ``mint`` signs (the bench knows the server's
    JWT secret), so every upvote is a new one, never a no-op.
    """

    base: str
    users: list[User]
    issues: list[str]
    signin_seconds: list[float] = field(default_factory=list)
    reads: str = ""
    hot_issue: str = ""
    hot_upvotes: int = 0
    editors: list[User] = field(default_factory=list)
    editor_edits: int = 0
    mint: Callable[[], str] | None = None

    @property
    def read_base(self) -> str:
        return self.reads or self.base

    def base_for(self, method: str) -> str:
        """Writes (POST, PUT, PATCH, DELETE) to the command side, reads (GET, HEAD) to the query side."""
        return self.read_base if method.upper() in ("GET", "HEAD") else self.base


def report_body(i: int) -> bytes:
    rnd = random.Random(i)
    return orjson.dumps(
        {
            "title": f"Pothole number {i} on Main Street",
            "description": "Deep enough to lose a wheel, near the bus stop.",
            "category": rnd.choice(CATEGORIES),
            "location": {"lat": 51.4 + rnd.random() / 5, "lon": -0.2 + rnd.random() / 5},
            "address": f"{i} Main Street",
        }
    )


async def prepare(
    base: str, n_users: int, issues_per_user: int, concurrency: int = 4, reads: str = "", settle_s: float = 2.0
) -> World:
    """Register and sign in ``n_users`` citizens (argon2: the slow part) and report their first issues.

    Commands go to ``base``; with ``reads`` (a separate query API) the last issue is polled there for up
    to ``settle_s`` seconds, so the views hold every issue before anything is measured.
    """
    users = [User(f"bench-{uuid.uuid4().hex[:10]}@example.org") for _ in range(n_users)]
    world = World(base, users, [], reads=reads)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def onboard(u: User) -> None:
            async with sem:
                r = await client.post("/v1/users", json={"email": u.email, "password": PASSWORD, "display_name": "B"})
                r.raise_for_status()
                u.id = r.json()["id"]
                t0 = asyncio.get_running_loop().time()
                r = await client.post("/v1/auth/token", data={"username": u.email, "password": PASSWORD})
                world.signin_seconds.append(asyncio.get_running_loop().time() - t0)
                r.raise_for_status()
                u.access, u.refresh = r.json()["access_token"], r.json()["refresh_token"]

        await asyncio.gather(*(onboard(u) for u in users))
        counter = itertools.count()
        last = ""

        async def report(u: User) -> None:
            nonlocal last
            async with sem:
                for _ in range(issues_per_user):
                    r = await client.post("/v1/issues", content=report_body(next(counter)), headers=_auth(u))
                    r.raise_for_status()
                    u.issues.append(r.json()["id"])
                    last = r.json()["position"]

        await asyncio.gather(*(report(u) for u in users))
        world.issues = [i for u in users for i in u.issues]
        # read the last issue with its token (and poll it), so the views hold every issue before measuring
        deadline = asyncio.get_running_loop().time() + settle_s
        url = f"{world.read_base}/v1/issues/{world.issues[-1]}"
        while (await client.get(url, headers={"X-Consistency-Token": last})).status_code != 200:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
    return world


def _auth(u: User) -> dict[str, str]:
    return {"authorization": f"Bearer {u.access}", "content-type": "application/json"}


def minter(jwt_secret: str) -> Callable[[], str]:
    """Access tokens for a crowd of citizens who never registered: each call is a new one (upvotes need no account)."""
    from command_api.domain.actor import Actor
    from snapfix.settings import Settings
    from snapfix.tokens import Tokens

    tokens = Tokens(Settings(jwt_secret=jwt_secret, access_token_ttl_s=14_400))  # type: ignore[arg-type]
    now = datetime.now(UTC)

    def mint() -> str:
        return tokens.issue(Actor(f"crowd-{uuid.uuid4().hex}", frozenset({"citizen"})), now).access_token

    return mint


async def skew(world: World, hot_upvotes: int, editor_edits: int, editors: int = 4, concurrency: int = 32) -> None:
    """Give the world its hot issue (``hot_upvotes`` upvotes) and its frequent editors, through the command API."""
    assert world.mint is not None
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=world.base, timeout=60) as client:
        owner = world.users[0]
        r = await client.post("/v1/issues", content=report_body(7), headers=_auth(owner))
        r.raise_for_status()
        world.hot_issue = r.json()["id"]

        async def upvote() -> None:
            async with sem:
                headers = {"authorization": f"Bearer {world.mint()}"}  # type: ignore[misc]
                (await client.put(f"/v1/issues/{world.hot_issue}/upvote", headers=headers)).raise_for_status()

        await asyncio.gather(*(upvote() for _ in range(hot_upvotes)))
        world.hot_upvotes = hot_upvotes
        world.editors = world.users[1 : 1 + editors]

        async def edits(u: User) -> None:
            for n in range(editor_edits):
                body = orjson.dumps({"display_name": f"Editor {n}"})
                (await client.patch("/v1/users/me", content=body, headers=_auth(u))).raise_for_status()

        await asyncio.gather(*(edits(u) for u in world.editors))
        world.editor_edits = editor_edits


class Targets:
    """Builds vegeta targets for one request class at a time, or for the weighted mix."""

    def __init__(self, world: World, seed: int = 8) -> None:
        self.w = world
        self.rnd = random.Random(seed)
        self.counter = itertools.count(100_000)

    def one(self, kind: str) -> Target:
        """One request of ``kind``, sent where its method belongs (see ``World.base_for``)."""
        t = self._one(kind)
        t.url = self.w.base_for(t.method) + t.url
        return t

    def _one(self, kind: str) -> Target:
        w, rnd, b = self.w, self.rnd, ""
        u = rnd.choice(w.users)
        hot = w.issues[: max(1, len(w.issues) // 5)]  # reads favour recent, popular issues
        if kind == "issue.create":
            return Target("POST", f"{b}/v1/issues", _auth(u), report_body(next(self.counter)))
        if kind == "issue.update":
            owner = rnd.choice([x for x in w.users if x.issues])
            body = orjson.dumps({"description": f"Update {next(self.counter)}: it got worse."})
            return Target("PATCH", f"{b}/v1/issues/{rnd.choice(owner.issues)}", _auth(owner), body)
        if kind == "issue.upvote":  # a new upvote each time; a quarter of them on the hot issue
            hot = w.hot_issue and rnd.random() < 0.25
            return self._upvote(w.hot_issue if hot else rnd.choice(w.issues), u)
        if kind == "issue.upvote_hot":  # the issue with thousands of upvotes
            return self._upvote(w.hot_issue, u)
        if kind == "issue.upvote_cold":  # issues with few upvotes or none
            return self._upvote(rnd.choice(w.issues), u)
        if kind == "issue.comment":
            body = orjson.dumps({"body": f"Seen it too ({next(self.counter)})."})
            return Target("POST", f"{b}/v1/issues/{rnd.choice(w.issues)}/comments", _auth(u), body)
        if kind == "issue.view":
            return Target("GET", f"{b}/v1/issues/{rnd.choice(hot)}")
        if kind == "browse.list":
            return Target("GET", f"{b}/v1/issues?limit=20")
        if kind == "browse.filter_status":
            return Target("GET", f"{b}/v1/issues?status={rnd.choice(STATUSES)}&limit=20")
        if kind == "browse.filter_category":
            return Target("GET", f"{b}/v1/issues?category={rnd.choice(CATEGORIES)}&limit=20")
        if kind == "browse.sort_upvotes":
            return Target("GET", f"{b}/v1/issues?sort=upvotes&limit=20")
        if kind == "browse.filter_department":
            return Target("GET", f"{b}/v1/issues?department=roads&sort=updated&limit=20")
        if kind == "user.profile_view":
            return Target("GET", f"{b}/v1/users/me", {"authorization": f"Bearer {u.access}"})
        if kind == "user.profile_update":  # half of them by the users who edit all the time
            body = orjson.dumps({"display_name": f"Bench {next(self.counter)}"})
            editor = rnd.choice(w.editors) if w.editors and rnd.random() < 0.5 else u
            return Target("PATCH", f"{b}/v1/users/me", _auth(editor), body)
        if kind == "user.refresh":
            return Target("POST", f"{b}/v1/auth/refresh", _auth(u), orjson.dumps({"refresh_token": u.refresh}))
        if kind == "user.sign_in":
            form = f"username={u.email.replace('@', '%40')}&password={PASSWORD.replace(' ', '+')}".encode()
            return Target("POST", f"{b}/v1/auth/token", {"content-type": "application/x-www-form-urlencoded"}, form)
        if kind == "user.register":
            body = orjson.dumps(
                {"email": f"new-{uuid.uuid4().hex[:12]}@example.org", "password": PASSWORD, "display_name": "N"}
            )
            return Target("POST", f"{b}/v1/users", {"content-type": "application/json"}, body)
        if kind == "health.healthz":
            return Target("GET", f"{b}/healthz")
        if kind == "health.readyz":
            return Target("GET", f"{b}/readyz")
        raise ValueError(kind)

    def _upvote(self, issue: str, u: User) -> Target:
        """A new upvote: by a crowd member who never voted when the world can mint tokens, else by ``u``."""
        headers = {"authorization": f"Bearer {self.w.mint()}"} if self.w.mint else _auth(u)
        return Target("PUT", f"/v1/issues/{issue}/upvote", headers)

    def of(self, kind: str, n: int) -> list[Target]:
        return [self.one(kind) for _ in range(n)]

    def mix(self, n: int) -> list[Target]:
        """``n`` targets in the mix's proportions, shuffled (vegeta cycles through them in order)."""
        kinds = [k for k, _ in MIX]
        weights = [s for _, s in MIX]
        return [self.one(k) for k in self.rnd.choices(kinds, weights, k=n)]

    def file_for(self, kind: str, work: Path):
        """A callable giving a fresh targets file sized for each step (so every create or register is new)."""

        def build(rate: float, duration_s: float) -> Path:
            n = max(200, int(rate * duration_s * 1.05))
            if kind == "mix":
                ts = self.mix(n)
            elif kind == "issue.view":
                ts = self.of(kind, min(n, 20_000))
            else:
                ts = self.of(kind, n)
            return write_targets(work / f"targets-{kind}.jsonl", ts)

        return build


def classify(r: Result) -> str:
    """The mix class of a vegeta result, from its method and path."""
    path = urlparse(r.url).path
    q = urlparse(r.url).query
    m = r.method
    if path == "/healthz":
        return "health.healthz"
    if path == "/readyz":
        return "health.readyz"
    if path == "/v1/users":
        return "user.register"
    if path == "/v1/auth/token":
        return "user.sign_in"
    if path == "/v1/auth/refresh":
        return "user.refresh"
    if path == "/v1/users/me":
        return "user.profile_view" if m == "GET" else "user.profile_update"
    if path == "/v1/issues":
        if m == "POST":
            return "issue.create"
        filters = (("status=", "browse.filter_status"), ("category=", "browse.filter_category"),
                   ("department=", "browse.filter_department"), ("sort=upvotes", "browse.sort_upvotes"))  # fmt: skip
        for key, kind in filters:
            if key in q:
                return kind
        return "browse.list"
    if path.endswith("/upvote"):
        return "issue.upvote"
    if path.endswith("/comments"):
        return "issue.comment"
    return "issue.update" if m == "PATCH" else "issue.view"
