"""The application service of the write side: load, decide, append, with retries and idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
import structlog

from command_api import commands as c
from command_api import images, kinds
from command_api.aggregates import Loaded, S, envelopes
from command_api.domain import catalogue as catalogue_domain
from command_api.domain import issue as issue_domain
from command_api.domain import session as session_domain
from command_api.domain import user as user_domain
from command_api.domain.actor import Actor
from command_api.domain.errors import AlreadyExists, DomainError, Invalid, NotFound
from command_api.repository import AggregateKind, Current, Repository
from command_api.security import Passwords
from events import types as e
from events.envelope import Metadata, Position
from events.ports import Claim, ClaimTaken, ConcurrencyConflict, EventLogError, EventStore
from events.types import DomainEvent
from snapfix import metrics
from snapfix.blobs import BlobStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What every command answers: the aggregate, its version now, and a consistency token."""

    id: str
    version: int
    position: Position | None
    replayed: bool = False
    noop: bool = False  # the command changed nothing: no event was appended

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "position": self.position.token() if self.position else None}


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An Idempotency-Key, scoped to its user, with a fingerprint of the request it came with."""

    key: str
    scope: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, scope: str, method: str, path: str, body: Any) -> Idempotency:
        digest = hashlib.sha256(orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS)).hexdigest()
        return cls(key=key, scope=scope, fingerprint=digest)

    @property
    def claim_key(self) -> str:
        return f"idem:{self.scope}:{self.key}"


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request."""


Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class PhotoLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000


Decide = Callable[[Loaded[S]], Awaitable[list[DomainEvent]] | list[DomainEvent]]


class CommandHandlers:
    """Every command of the write API, against one EventStore, through the state cache (command_api/repository.py)."""

    def __init__(
        self,
        store: EventStore,
        passwords: Passwords,
        clock: Clock,
        retries: int = 5,
        blobs: BlobStore | None = None,
        photo_limits: PhotoLimits | None = None,
        repository: Repository | None = None,
        read_max_age_s: float = 1.0,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._clock = clock
        self._retries = retries
        self._blobs = blobs
        self.photo_limits = photo_limits or PhotoLimits()
        self.repository = repository or Repository(store)
        # how long state that is only read (the catalogue, a user signing in) is trusted without a look at the log
        self._read_max_age_s = read_max_age_s
        # Commands on one aggregate queue up inside a process instead of racing to a conflict;
        # across processes the log's optimistic concurrency still decides.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, aggregate_id: str) -> asyncio.Lock:
        lock = self._locks.get(aggregate_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[aggregate_id] = lock
        return lock

    # --- the one way every command is executed ------------------------------------

    async def _execute(
        self,
        kind: AggregateKind[S],
        aggregate_id: str,
        decide: Decide[S],
        meta: Metadata,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        claims: tuple[Claim, ...] = (),
    ) -> CommandResult:
        """Decide on the aggregate's state and append. A conflict without If-Match is retried on fresh state."""
        async with self._lock(aggregate_id):
            if idem is not None:
                replay = await self._replay(idem)
                if replay is not None:
                    return replay
                claims = (*claims, Claim(idem.claim_key, {"fingerprint": idem.fingerprint}))
            attempts = 1 if expected_version is not None else self._retries + 1
            for attempt in range(attempts):
                current = await self._current(kind, aggregate_id, expected_version, stale=attempt > 0)
                current, events = await self._decided(kind, aggregate_id, current, decide, expected_version)
                loaded = current.loaded
                if not events:
                    return CommandResult(aggregate_id, loaded.version, loaded.position, noop=True)
                batch = envelopes(kind.name, aggregate_id, loaded.version, events, meta, self._clock())
                try:
                    recorded = await self._store.append(aggregate_id, loaded.version, batch, claims)
                except ConcurrencyConflict:
                    if attempt + 1 >= attempts:
                        raise
                    log.info("command.retry", aggregate_id=aggregate_id, attempt=attempt + 1)
                    await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not crypto
                    continue
                except ClaimTaken as taken:
                    if idem is not None and taken.record.key == idem.claim_key:
                        replay = await self._replay(idem)
                        if replay is not None:
                            return replay
                    raise
                self.repository.advanced(kind, loaded, events, recorded)
                metrics.events_appended(recorded)
                last = recorded[-1]
                log.info(
                    "command.appended",
                    aggregate_id=aggregate_id,
                    events=[r.event_type for r in recorded],
                    version=last.aggregate_version,
                )
                return CommandResult(aggregate_id, last.aggregate_version, last.position)
            raise AssertionError("unreachable")  # pragma: no cover

    async def _current(
        self, kind: AggregateKind[S], aggregate_id: str, expected_version: int | None, *, stale: bool
    ) -> Current[S]:
        """The state to decide on: cached unless the last attempt found the cache behind; checked against If-Match."""
        if expected_version == 0 and not stale:  # a new aggregate: nothing to read, the append checks it is new
            return _at(aggregate_id, self.repository.new(kind, aggregate_id), expected_version)
        repo = self.repository
        current = await (repo.refresh(kind, aggregate_id) if stale else repo.load(kind, aggregate_id))
        if expected_version is not None and current.version != expected_version and not current.fresh:
            current = await repo.refresh(kind, aggregate_id)  # the cache may be behind the log
        return _at(aggregate_id, current, expected_version)

    async def _decided(
        self,
        kind: AggregateKind[S],
        aggregate_id: str,
        current: Current[S],
        decide: Decide[S],
        expected_version: int | None,
    ) -> tuple[Current[S], list[DomainEvent]]:
        """The decision on state the log still holds: a cached state that decided nothing or refused is checked."""
        while True:
            try:
                decided = decide(current.loaded)
                events = decided if isinstance(decided, list) else await decided
            except DomainError:
                fresher = await self.repository.revalidate(kind, current)
                if fresher is None:
                    raise
                current = _at(aggregate_id, fresher, expected_version)
                continue
            if events:
                return current, events
            fresher = await self.repository.revalidate(kind, current)
            if fresher is None:
                return current, events
            current = _at(aggregate_id, fresher, expected_version)

    async def _replay(self, idem: Idempotency) -> CommandResult | None:
        record = await self._store.get_claim(idem.claim_key)
        if record is None:
            return None
        if record.data.get("fingerprint") != idem.fingerprint:
            raise IdempotencyMismatch(f"Idempotency-Key {idem.key!r} was used with a different request")
        return CommandResult(record.aggregate_id, record.version, record.position, replayed=True)

    # --- users ------------------------------------------------------------------

    @metrics.counted
    async def register(self, cmd: c.RegisterUser, meta: Metadata, idem: Idempotency | None = None) -> CommandResult:
        email = user_domain.normalise_email(cmd.email)
        password_hash = await self._passwords.hash(cmd.password)
        user_id = str(uuid.uuid4())
        meta = Metadata(actor_id=meta.actor_id or user_id, correlation_id=meta.correlation_id)
        try:
            return await self._execute(
                kinds.USER,
                user_id,
                lambda _: user_domain.register(cmd, password_hash),
                meta,
                expected_version=0,
                idem=idem,
                claims=(Claim(f"email:{email}"),),
            )
        except ClaimTaken as taken:
            if taken.record.key.startswith("email:"):
                raise AlreadyExists("an account with this email already exists") from None
            raise

    async def user_by_email(self, email: str) -> user_domain.User | None:
        record = await self._store.get_claim(f"email:{user_domain.normalise_email(email)}")
        if record is None:
            return None
        return await self.user(record.aggregate_id)

    async def user(self, user_id: str) -> user_domain.User | None:
        loaded = await self.repository.read(kinds.USER, user_id, self._read_max_age_s)
        return loaded.state if loaded.version else None

    async def authenticate(self, email: str, password: str) -> user_domain.User | None:
        """The user whose email and password these are; a hash made with older argon2 parameters is renewed."""
        user = await self.user_by_email(email)
        checked = await self._passwords.check(user.password_hash if user else None, password)
        if not checked.ok or user is None:
            return None
        if checked.rehashed is not None:
            await self._rehash(user, checked.rehashed)
        return user

    async def _rehash(self, user: user_domain.User, password_hash: str) -> None:
        """Best effort: a sign-in never fails because its hash could not be renewed (the next one tries again)."""
        try:
            await self._on_user(
                user.id,
                lambda s: user_domain.rehash_password(s.state, password_hash),
                Metadata(actor_id=user.id),
            )
        except (ConcurrencyConflict, EventLogError) as error:
            log.warning("auth.rehash_failed", user_id=user.id, reason=str(error))

    @metrics.counted
    async def change_profile(
        self,
        cmd: c.ChangeProfile,
        actor: Actor,
        meta: Metadata,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        def decide(s: Loaded[user_domain.User]) -> list[DomainEvent]:
            return user_domain.change_profile(s.state, cmd, actor)

        return await self._on_user(cmd.user_id, decide, meta, expected_version, idem)

    @metrics.counted
    async def grant_role(self, cmd: c.GrantRole, actor: Actor, meta: Metadata) -> CommandResult:
        return await self._on_user(cmd.user_id, lambda s: user_domain.grant_role(s.state, cmd, actor), meta)

    @metrics.counted
    async def revoke_role(self, cmd: c.RevokeRole, actor: Actor, meta: Metadata) -> CommandResult:
        return await self._on_user(cmd.user_id, lambda s: user_domain.revoke_role(s.state, cmd, actor), meta)

    async def _on_user(
        self,
        user_id: str,
        decide: Callable[[Loaded[user_domain.User]], list[DomainEvent]],
        meta: Metadata,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """A command on an existing user's aggregate."""
        return await self._execute(kinds.USER, user_id, decide, meta, expected_version, idem)

    # --- the catalogue ------------------------------------------------------------

    async def catalogue(self) -> catalogue_domain.Catalogue:
        loaded = await self.repository.read(kinds.CATALOGUE, catalogue_domain.CATALOGUE_ID, self._read_max_age_s)
        return loaded.state

    @metrics.counted
    async def define_category(self, cmd: c.DefineCategory, actor: Actor, meta: Metadata) -> CommandResult:
        return await self._execute(
            kinds.CATALOGUE, catalogue_domain.CATALOGUE_ID, lambda s: catalogue_domain.define(s.state, cmd, actor), meta
        )

    @metrics.counted
    async def retire_category(self, cmd: c.RetireCategory, actor: Actor, meta: Metadata) -> CommandResult:
        return await self._execute(
            kinds.CATALOGUE, catalogue_domain.CATALOGUE_ID, lambda s: catalogue_domain.retire(s.state, cmd, actor), meta
        )

    async def seed_catalogue(self, actor: Actor, meta: Metadata) -> None:
        """Define the default categories once; a no-op when the catalogue already has any."""
        if (await self.catalogue()).categories:
            return
        for cmd in catalogue_domain.seed_commands():
            await self.define_category(cmd, actor, meta)

    # --- issues -------------------------------------------------------------------

    @metrics.counted
    async def report_issue(
        self, cmd: c.ReportIssue, actor: Actor, meta: Metadata, idem: Idempotency | None = None
    ) -> CommandResult:
        category = (await self.catalogue()).open_category(cmd.category)
        department = category.department
        cmd = replace(cmd, attributes=catalogue_domain.check_answers(category, cmd.attributes))
        return await self._execute(
            kinds.ISSUE,
            cmd.issue_id,
            lambda _: issue_domain.report(cmd, actor, department),
            meta,
            expected_version=0,
            idem=idem,
        )

    @metrics.counted
    async def issue_command(
        self,
        cmd: c.IssueCommand,
        actor: Actor,
        meta: Metadata,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        if isinstance(cmd, c.EditIssue) and cmd.category is not None:
            (await self.catalogue()).department_of(cmd.category)
        if isinstance(cmd, c.MarkDuplicate):
            await self._require_open_original(cmd.original_id)
        now = self._clock()
        return await self._execute(
            kinds.ISSUE,
            cmd.issue_id,
            lambda s: issue_domain.decide(s.state, cmd, actor, now),
            meta,
            expected_version,
            idem,
        )

    async def _require_open_original(self, original_id: str) -> None:
        original = await self.repository.read(kinds.ISSUE, original_id, self._read_max_age_s)
        if not original.version:
            raise NotFound(f"original issue {original_id} does not exist")
        if original.state.status == issue_domain.DUPLICATE:
            raise Invalid(f"issue {original_id} is itself a duplicate of {original.state.duplicate_of}")

    # --- photos -------------------------------------------------------------------

    @metrics.counted
    async def add_photo(
        self, issue_id: str, raw: bytes, actor: Actor, meta: Metadata, idem: Idempotency | None = None
    ) -> CommandResult:
        """Check who may, sanitise the bytes off the event loop, store the blob, then record the event.

        The blob is written only once the domain has accepted the command, so a refused
        upload leaves nothing behind; a crash between the two leaves an unreferenced blob,
        which is harmless (no event points at it).
        """
        assert self._blobs is not None, "this process has no blob store"
        photo_id = str(uuid.uuid4())
        now = self._clock()
        current = await self.repository.read(kinds.ISSUE, issue_id, 0.0)
        probe = c.AddPhoto(issue_id, photo_id, "probe", "image/jpeg", 1, 1, 1)
        issue_domain.decide(current.state, probe, actor, now)  # refuse early, before the costly decoding
        limits = self.photo_limits
        clean = await asyncio.to_thread(images.sanitise, raw, limits.max_bytes, limits.max_pixels)
        blob_key = f"photos/{issue_id}/{photo_id}.{clean.extension}"
        cmd = c.AddPhoto(issue_id, photo_id, blob_key, clean.content_type, clean.width, clean.height, len(clean.data))
        blobs = self._blobs

        async def decide(s: Loaded[issue_domain.Issue]) -> list[DomainEvent]:
            events = issue_domain.decide(s.state, cmd, actor, now)
            if events:
                await blobs.put(blob_key, clean.data, clean.content_type)
            return events

        return await self._execute(kinds.ISSUE, issue_id, decide, meta, None, idem)

    async def issue_state(self, issue_id: str) -> issue_domain.Issue:
        return (await self.repository.read(kinds.ISSUE, issue_id, self._read_max_age_s)).state

    # --- sign-in sessions ---------------------------------------------------------

    @metrics.counted
    async def start_session(self, user_id: str, family: str, token_id: str, meta: Metadata) -> CommandResult:
        cmd = c.StartSession(session_domain.aggregate_id(family), user_id, token_id)
        return await self._execute(
            kinds.SESSION,
            cmd.session_id,
            lambda _: session_domain.start(cmd),
            meta,
            expected_version=0,
        )

    @metrics.counted
    async def rotate_refresh_token(
        self, user_id: str, family: str, presented: str, new_token_id: str, meta: Metadata
    ) -> CommandResult:
        """Spend the presented token for a new one; a spent token revokes the family and raises."""
        cmd = c.RotateRefreshToken(session_domain.aggregate_id(family), user_id, presented, new_token_id)
        decided: list[DomainEvent] = []

        def decide(s: Loaded[session_domain.Session]) -> list[DomainEvent]:
            decided[:] = session_domain.rotate(s.state, cmd)
            return list(decided)

        result = await self._execute(kinds.SESSION, cmd.session_id, decide, meta)
        if any(isinstance(event, e.SessionRevoked) for event in decided):
            log.warning("auth.refresh_reuse", session_id=cmd.session_id)
            raise session_domain.RefreshTokenReused(
                "this refresh token was already used: every session token is revoked"
            )
        return result

    @metrics.counted
    async def end_session(self, user_id: str, family: str, meta: Metadata) -> CommandResult:
        cmd = c.EndSession(session_domain.aggregate_id(family), user_id)
        return await self._execute(
            kinds.SESSION,
            cmd.session_id,
            lambda s: session_domain.end(s.state, cmd),
            meta,
        )

    # --- notifications ------------------------------------------------------------

    async def claim_notification_email(self, notification_id: str, user_id: str, issue_id: str) -> bool:
        """Record that this notification's email goes out now; False if it was recorded before.

        One aggregate per notification, appended at version 1 only: the log's optimistic
        concurrency makes this at-most-once across replays, rebuilds and processes.
        """
        aggregate_id = f"notification-{notification_id}"
        try:
            await self._execute(
                kinds.NOTIFICATION,
                aggregate_id,
                lambda _: [e.NotificationEmailed(user_id=user_id, issue_id=issue_id)],
                Metadata(actor_id="system"),
                expected_version=0,
            )
        except ConcurrencyConflict:
            return False
        return True


def _at(aggregate_id: str, current: Current[S], expected_version: int | None) -> Current[S]:
    """``current``, unless it is not at the version an If-Match asked for."""
    if expected_version is not None and current.version != expected_version:
        raise ConcurrencyConflict(aggregate_id, expected_version, current.version)
    return current
