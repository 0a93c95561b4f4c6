"""Bad input gets a clear 4xx problem, stale writers get 409, retries with Idempotency-Key are safe."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import PASSWORD, auth, fresh, make_user, report, sign_up

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert (body["status"], body["type"]) == (status, f"/problems/{type_}")
    assert body["title"]
    assert body["detail"]
    return body


async def history_of(client: httpx.AsyncClient, issue_id: str, position: str | None = None) -> list[str]:
    items = (await client.get(f"/v1/issues/{issue_id}/history", headers=fresh(position))).json()["items"]
    return [h["event_type"] for h in items]


class TestBadInput:
    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"title": "x"},
            {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 91, "lon": 0}},
            {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 0, "lon": 181}},
            {"title": "Hole here", "description": "d", "category": "Pot Hole", "location": {"lat": 0, "lon": 0}},
            {"title": "Hole here", "description": " ", "category": "pothole", "location": {"lat": 0, "lon": 0}},
            {
                "title": "Hole here",
                "description": "d",
                "category": "pothole",
                "location": {"lat": 0, "lon": 0},
                "admin": True,
            },
            {"title": "A" * 141, "description": "d", "category": "pothole", "location": {"lat": 0, "lon": 0}},
        ],
    )
    async def test_malformed_reports_are_422_with_field_errors(self, client: httpx.AsyncClient, body: dict) -> None:
        ada = await sign_up(client)
        response = await client.post("/v1/issues", json=body, headers=auth(ada))
        problem = assert_problem(response, 422, "validation-error")
        assert problem["errors"]
        assert all({"loc", "msg", "type"} <= set(e) for e in problem["errors"])

    async def test_a_body_that_is_not_json_is_422(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        response = await client.post(
            "/v1/issues", content=b"{not json", headers={**auth(ada), "content-type": "application/json"}
        )
        assert_problem(response, 422, "validation-error")

    async def test_an_unknown_category_is_422_naming_the_known_ones(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        response = await client.post(
            "/v1/issues",
            headers=auth(ada),
            json={"title": "Dragon", "description": "d", "category": "dragons", "location": {"lat": 0, "lon": 0}},
        )
        body = assert_problem(response, 422, "invalid-command")
        assert "pothole" in body["detail"]

    async def test_weak_passwords_and_bad_emails_are_refused(self, client: httpx.AsyncClient) -> None:
        for body in (
            {"email": "ada@example.org", "password": "short", "display_name": "Ada"},
            {"email": "ada@example.org", "password": "aaaaaaaaaaaa", "display_name": "Ada"},
            {"email": "not-an-email", "password": PASSWORD, "display_name": "Ada"},
        ):
            assert_problem(await client.post("/v1/users", json=body), 422, "validation-error")

    async def test_bad_cursor_if_match_and_consistency_token_are_400(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        created = await report(client, ada)
        assert_problem(await client.get("/v1/issues?cursor=garbage!"), 400, "bad-cursor")
        assert_problem(
            await client.get("/v1/issues", headers={"X-Consistency-Token": "zz"}), 400, "bad-consistency-token"
        )
        response = await client.patch(
            f"/v1/issues/{created['id']}", json={"title": "New title"}, headers={**auth(ada), "If-Match": "yesterday"}
        )
        assert_problem(response, 400, "bad-if-match")

    async def test_unknown_routes_and_issues_are_404_problems(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")
        assert_problem(await client.get("/v1/issues/does-not-exist"), 404, "not-found")
        ada = await sign_up(client)
        assert_problem(await client.put("/v1/issues/does-not-exist/upvote", headers=auth(ada)), 404, "not-found")


class TestAuthentication:
    async def test_commands_need_a_valid_token(self, client: httpx.AsyncClient) -> None:
        body = {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 0, "lon": 0}}
        assert_problem(await client.post("/v1/issues", json=body), 401, "unauthorized")
        bad = await client.post("/v1/issues", json=body, headers={"Authorization": "Bearer not.a.jwt"})
        assert_problem(bad, 401, "unauthorized")
        assert bad.headers["www-authenticate"] == "Bearer"

    async def test_wrong_passwords_and_unknown_emails_look_the_same(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        wrong = await client.post("/v1/auth/token", data={"username": ada["email"], "password": "nope-nope-nope"})
        unknown = await client.post("/v1/auth/token", data={"username": "who@example.org", "password": PASSWORD})
        assert assert_problem(wrong, 401, "invalid-credentials") == assert_problem(unknown, 401, "invalid-credentials")

    async def test_a_refresh_token_gives_a_new_pair_but_is_no_access_token(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        tokens = (await client.post("/v1/auth/token", data={"username": ada["email"], "password": PASSWORD})).json()
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        assert set(refreshed.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
        as_access = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
        assert_problem(as_access, 401, "unauthorized")
        as_refresh = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
        assert_problem(as_refresh, 401, "invalid-token")

    async def test_duplicate_emails_are_409_whatever_their_case(self, client: httpx.AsyncClient) -> None:
        await client.post("/v1/users", json={"email": "ada@example.org", "password": PASSWORD, "display_name": "A"})
        again = await client.post(
            "/v1/users", json={"email": " ADA@example.org", "password": PASSWORD, "display_name": "B"}
        )
        assert_problem(again, 409, "already-exists")


class TestAuthorization:
    async def test_citizens_cannot_triage_and_cannot_edit_others_reports(self, client: httpx.AsyncClient) -> None:
        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        created = await report(client, ada)
        issue = created["id"]
        assert_problem(
            await client.post(f"/v1/issues/{issue}/status", json={"status": "acknowledged"}, headers=auth(ben)),
            403,
            "forbidden",
        )
        assert_problem(
            await client.post(f"/v1/issues/{issue}/assignment", json={"department": "parks"}, headers=auth(ada)),
            403,
            "forbidden",
        )
        assert_problem(
            await client.patch(f"/v1/issues/{issue}", json={"title": "Mine now"}, headers=auth(ben)), 403, "forbidden"
        )
        assert await history_of(client, issue, created["position"]) == ["IssueReported"]

    async def test_forbidden_transitions_are_409(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        staff = await make_user(app, client, "Sam", "staff")
        created = await report(client, ada)
        response = await client.post(
            f"/v1/issues/{created['id']}/status", json={"status": "closed"}, headers=auth(staff)
        )
        assert_problem(response, 409, "invalid-transition")


class TestConcurrency:
    async def test_a_stale_if_match_is_409_and_writes_nothing(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        created = await report(client, ada)
        issue = created["id"]
        first = await client.patch(
            f"/v1/issues/{issue}", json={"title": "Version two"}, headers={**auth(ada), "If-Match": '"1"'}
        )
        assert first.status_code == 200
        stale = await client.patch(
            f"/v1/issues/{issue}", json={"title": "Lost update"}, headers={**auth(ada), "If-Match": '"1"'}
        )
        body = assert_problem(stale, 409, "version-conflict")
        assert body["current_version"] == 2
        assert await history_of(client, issue, first.json()["position"]) == ["IssueReported", "IssueEdited"]

    async def test_of_concurrent_edits_at_one_version_exactly_one_wins(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        created = await report(client, ada)
        responses = await asyncio.gather(
            *(
                client.patch(
                    f"/v1/issues/{created['id']}",
                    json={"title": f"Edit number {n}"},
                    headers={**auth(ada), "If-Match": "1"},
                )
                for n in range(10)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] + [409] * 9

    async def test_concurrent_upvotes_without_if_match_all_land_with_versions_in_sequence(
        self, client: httpx.AsyncClient
    ) -> None:
        """Commands without If-Match are retried on conflict: every voter counts, versions have no gaps."""
        ada = await sign_up(client)
        voters = [await sign_up(client, f"Voter{n}") for n in range(12)]
        created = await report(client, ada)
        responses = await asyncio.gather(
            *(client.put(f"/v1/issues/{created['id']}/upvote", headers=auth(v)) for v in voters)
        )
        assert all(r.status_code == 200 for r in responses)
        assert sorted(r.json()["version"] for r in responses) == list(range(2, 14))
        last = max(responses, key=lambda r: r.json()["version"]).json()["position"]
        items = (await client.get(f"/v1/issues/{created['id']}/history", headers=fresh(last))).json()["items"]
        assert [h["version"] for h in items] == list(range(1, 14))
        detail = (await client.get(f"/v1/issues/{created['id']}", headers=fresh(last))).json()
        assert detail["upvotes"] == 12


class TestIdempotency:
    async def test_the_same_key_and_body_replays_the_answer_and_writes_once(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        body = {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 1, "lon": 2}}
        headers = {**auth(ada), "Idempotency-Key": "report-123"}
        first = await client.post("/v1/issues", json=body, headers=headers)
        second = await client.post("/v1/issues", json=body, headers=headers)
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json() == second.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        listed = (await client.get("/v1/issues", headers=fresh(first.json()["position"]))).json()["items"]
        assert len(listed) == 1

    async def test_the_same_key_with_another_body_is_422(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        body = {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 1, "lon": 2}}
        headers = {**auth(ada), "Idempotency-Key": "report-456"}
        await client.post("/v1/issues", json=body, headers=headers)
        other = await client.post("/v1/issues", json={**body, "title": "Another hole"}, headers=headers)
        assert_problem(other, 422, "idempotency-key-reused")

    async def test_keys_are_scoped_to_their_user(self, client: httpx.AsyncClient) -> None:
        """Another user's identical key is a different request, not a replay of someone else's."""
        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        body = {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 1, "lon": 2}}
        a = await client.post("/v1/issues", json=body, headers={**auth(ada), "Idempotency-Key": "k"})
        b = await client.post("/v1/issues", json=body, headers={**auth(ben), "Idempotency-Key": "k"})
        assert a.json()["id"] != b.json()["id"]

    async def test_concurrent_retries_with_one_key_write_once(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        body = {"title": "Hole here", "description": "d", "category": "pothole", "location": {"lat": 1, "lon": 2}}
        headers = {**auth(ada), "Idempotency-Key": "storm"}
        responses = await asyncio.gather(*(client.post("/v1/issues", json=body, headers=headers) for _ in range(8)))
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
