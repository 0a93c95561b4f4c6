"""The mail port (notification emails) and its SMTP adapter over aiosmtplib."""

from __future__ import annotations

import abc
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiosmtplib


class MailError(Exception):
    """The mail server refused or could not be reached; the driver's error is chained."""


class Mailer(abc.ABC):
    """Sends one plain-text email."""

    @abc.abstractmethod
    async def send(self, to: str, subject: str, body: str) -> None:
        """Hand the message to the mail system; raise MailError if it was not accepted."""


class SmtpMailer(Mailer):
    """``smtp://host:port`` (plain, for a local relay) or ``smtps://host:port`` (implicit TLS)."""

    def __init__(self, url: str, sender: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"unsupported SNAPFIX_SMTP_URL {url!r}; expected smtp://host:port")
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._tls = parts.scheme == "smtps"
        self._username = parts.username
        self._password = parts.password
        self._sender = sender
        self._timeout = timeout_s

    async def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                use_tls=self._tls,
                start_tls=False if not self._tls else None,
                username=self._username,
                password=self._password,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            raise MailError(f"the mail server did not take the message: {type(e).__name__}") from e
