"""Notifications: recorded for followers, emailed once through a real SMTP server, never again on rebuild."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from projectors.notifications import NotificationWorker, Notifier
from snapfix.app import create_app
from snapfix.mail import SmtpMailer
from tests.conftest import embedded_settings
from tests.helpers import auth, make_user, report, sign_up
from tests.processes import free_port


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: ARG002 - aiosmtpd calls the hook with all three
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


class TestNotifications:
    async def test_followers_are_notified_and_emailed_once_even_after_a_rebuild(
        self, tmp_path: Path, smtp: tuple[Inbox, int]
    ) -> None:
        """Status changes and staff comments reach the reporter and subscribers, by list and by one email each."""
        inbox, port = smtp
        settings = embedded_settings(tmp_path, smtp_url=f"smtp://127.0.0.1:{port}")
        app = create_app(settings, "all")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ada, ben, eve = await sign_up(client, "Ada"), await sign_up(client, "Ben"), await sign_up(client, "Eve")
                sam = await make_user(app, client, "Sam", "staff")
                issue = await report(client, ada)
                await client.put(f"/v1/issues/{issue['id']}/subscription", headers=auth(ben))
                await client.post(f"/v1/issues/{issue['id']}/comments", json={"body": "me too"}, headers=auth(eve))
                await client.post(
                    f"/v1/issues/{issue['id']}/status", json={"status": "acknowledged"}, headers=auth(sam)
                )
                await client.post(f"/v1/issues/{issue['id']}/comments", json={"body": "On it"}, headers=auth(sam))
                await wait_for(lambda: len(inbox.messages) >= 4)

                mine = (await client.get("/v1/users/me/notifications", headers=auth(ada))).json()
                assert [n["kind"] for n in mine["items"]] == ["staff_comment", "status_changed"]
                assert mine["items"][1]["to_status"] == "acknowledged"
                assert (await client.get("/v1/users/me/notifications", headers=auth(eve))).json()["items"] == []
                assert len((await client.get("/v1/users/me/notifications", headers=auth(ben))).json()["items"]) == 2

                recipients = sorted(m["To"] for m in inbox.messages)
                assert recipients == sorted([ada["email"], ada["email"], ben["email"], ben["email"]])
                assert any("is now acknowledged" in m["Subject"] for m in inbox.messages)
                assert all(m.get_content_type() == "text/plain" for m in inbox.messages)

                # A rebuild: the notification worker replays the whole log from scratch, with a notifier.
                container = app.state.container
                views = container.views
                await views.drop(["notifications", "issue_followers"], "notifications")
                notifier = Notifier(container.handlers, SmtpMailer(settings.smtp_url, settings.mail_from), views)
                worker = NotificationWorker(container.log, views, notifier)
                await worker.setup()
                await worker.catch_up()
                assert notifier.sent == 0
                await asyncio.sleep(0.2)
                assert len(inbox.messages) == 4
                again = (await client.get("/v1/users/me/notifications", headers=auth(ada))).json()
                assert again == mine
