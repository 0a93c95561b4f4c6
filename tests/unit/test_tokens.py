"""Access tokens are checked once and remembered only until they expire."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from command_api.domain.actor import Actor
from snapfix.settings import Settings
from snapfix.tokens import InvalidToken, Tokens

ADA = Actor("ada", frozenset({"citizen"}))


def tokens() -> Tokens:
    return Tokens(Settings(jwt_secret="a-test-secret-of-more-than-thirty-two-chars", access_token_ttl_s=60))  # type: ignore[arg-type]


class TestCheckedTokens:
    def test_a_remembered_token_speaks_for_its_actor_again(self) -> None:
        """The second check of one access token gives the same actor."""
        t = tokens()
        access = t.issue(ADA, datetime.now(UTC)).access_token
        assert t.check(access, "access") == t.check(access, "access") == ADA

    def test_an_expired_token_is_refused_even_after_it_was_checked(self) -> None:
        """A token remembered while valid is refused once its expiry passed."""
        t = tokens()
        access = t.issue(ADA, datetime.now(UTC) - timedelta(seconds=58.5)).access_token  # a second or so left
        assert t.check(access, "access") == ADA
        time.sleep(2.0)
        with pytest.raises(InvalidToken):
            t.check(access, "access")

    def test_a_refresh_token_is_never_accepted_as_an_access_token(self) -> None:
        """Remembering checked access tokens does not blur the kinds."""
        t = tokens()
        pair = t.issue(ADA, datetime.now(UTC))
        t.check(pair.access_token, "access")
        with pytest.raises(InvalidToken):
            t.check(pair.refresh_token, "access")
