"""Notifications: who follows each issue, and one notification per follower for each change they care about.

A follower is the reporter or a subscriber. A status change (including being marked a
duplicate) or a staff comment notifies every follower except the person who made it.
One event fans out to many users, which a one-document-per-event projection cannot
express, so a process manager with its own checkpoint runs the pure functions below and
commits the followers and the notifications together. Notification ids derive from the
event id and the user, so a replay or a rebuild writes the same documents again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from command_api.handlers import CommandHandlers
from events import types as e
from events.envelope import Envelope
from events.ports import EventLog
from events.upcasting import decode
from projectors.ports import Change, Collection, Doc, Put, ViewStore
from projectors.process_manager import ProcessManager
from projectors.projection import already_applied, iso
from snapfix.mail import Mailer, MailError

log = structlog.get_logger(__name__)

FOLLOWERS = Collection(name="issue_followers")
NOTIFICATIONS = Collection(
    name="notifications",
    fields={"user_id": "text", "created_at": "text"},
    indexes=(("user_id", "-created_at", "-id"),),
)


def fold_followers(doc: Doc | None, env: Envelope, event: e.DomainEvent) -> Doc | None:
    """The reporter, the subscribers and the title of one issue."""
    if already_applied(doc, env):
        return doc
    if isinstance(event, e.IssueReported):
        new: Doc = {"id": env.aggregate_id, "reporter_id": event.reporter_id, "subscribers": [event.reporter_id]}
        new["title"] = event.title
    elif doc is None:
        return None
    else:
        new = {**doc}
        match event:
            case e.IssueSubscribed():
                new["subscribers"] = sorted({*doc["subscribers"], event.user_id})
            case e.IssueUnsubscribed():
                new["subscribers"] = sorted(set(doc["subscribers"]) - {event.user_id})
            case e.IssueEdited():
                new["title"] = event.title
    new["version"] = env.aggregate_version
    return new


def notifications_for(followers: Doc | None, env: Envelope, event: e.DomainEvent) -> list[Doc]:
    """The notifications one issue event gives rise to (none for most events)."""
    if followers is None:
        return []
    match event:
        case e.IssueStatusChanged():
            kind, text = "status_changed", f"is now {event.to_status.replace('_', ' ')}"
            extra: Doc = {"from_status": event.from_status, "to_status": event.to_status, "note": event.note}
        case e.IssueMarkedDuplicate():
            kind, text = "status_changed", "was marked a duplicate"
            extra = {"from_status": event.from_status, "to_status": "duplicate", "original_id": event.original_id}
        case e.IssueCommented() if event.by_staff:
            kind, text = "staff_comment", "has a comment from city staff"
            extra = {"comment_id": event.comment_id}
        case _:
            return []
    recipients = sorted(set(followers["subscribers"]) - {env.actor_id})
    return [
        {
            "id": notification_id(env.event_id, user_id),
            "user_id": user_id,
            "issue_id": env.aggregate_id,
            "issue_title": followers["title"],
            "kind": kind,
            "message": f"“{followers['title']}” {text}",
            "created_at": iso(env.occurred_at),
            "event_id": env.event_id,
            **extra,
        }
        for user_id in recipients
    ]


def notification_id(event_id: str, user_id: str) -> str:
    return hashlib.blake2b(f"{event_id}:{user_id}".encode(), digest_size=12).hexdigest()


@dataclass
class Notifier:
    """Sends a notification's email at most once: the send is claimed on the write side first.

    The claim is an event on the log (see ``CommandHandlers.claim_notification_email``),
    not a view, so rebuilding or replaying the views can never send an email again. A
    crash between claim and send loses that one email, which "at most once" accepts.
    """

    handlers: CommandHandlers
    mailer: Mailer
    store: ViewStore
    sent: int = 0

    async def deliver(self, notification: Doc) -> None:
        claimed = await self.handlers.claim_notification_email(
            notification["id"], notification["user_id"], notification["issue_id"]
        )
        if not claimed:
            return
        profile = await self.store.get("user_profile", notification["user_id"])
        if profile is None or not profile.get("email"):
            log.warning("notify.no_address", notification_id=notification["id"])
            return
        body = f"{notification['message']}.\n\nSee /v1/issues/{notification['issue_id']}\n"
        try:
            await self.mailer.send(profile["email"], f"SnapFix: {notification['message']}", body)
        except MailError as error:
            log.warning("notify.mail_failed", notification_id=notification["id"], reason=str(error))
            return
        self.sent += 1
        log.info("notify.emailed", notification_id=notification["id"])


class NotificationWorker(ProcessManager):
    """Keeps ``issue_followers`` and ``notifications``; hands new notifications to the notifier after commit."""

    name = "notifications"
    collections = (FOLLOWERS, NOTIFICATIONS)

    def __init__(self, event_log: EventLog, store: ViewStore, notifier: Notifier | None = None, **kwargs: float):
        super().__init__(event_log, store, **kwargs)  # type: ignore[arg-type]
        self._notifier = notifier
        self._pending: list[Doc] = []

    async def handle(self, batch: Sequence[Envelope]) -> list[Change]:
        issue_ids = sorted({env.aggregate_id for env in batch if env.aggregate_type == "issue"})
        followers: dict[str, Doc | None] = dict(await self._store.get_many(FOLLOWERS.name, issue_ids))
        touched: set[str] = set()
        made: list[Doc] = []
        for env in batch:
            if env.aggregate_type != "issue":
                continue
            event = decode(env)
            current = followers.get(env.aggregate_id)
            if not already_applied(current, env):  # a redelivered event notifies nobody twice
                made += notifications_for(current, env, event)
            new = fold_followers(current, env, event)
            if new is not current:
                followers[env.aggregate_id] = new
                touched.add(env.aggregate_id)
        self._pending = made
        changes: list[Change] = [Put(FOLLOWERS.name, doc) for i in sorted(touched) if (doc := followers[i])]
        return changes + [Put(NOTIFICATIONS.name, n) for n in made]

    async def after_commit(self) -> None:
        pending, self._pending = self._pending, []
        if self._notifier is not None:
            for notification in pending:
                await self._notifier.deliver(notification)
