"""The README's walkthrough, through HTTP against the one-process app."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from tests.helpers import auth, fresh, make_user, report, sign_up


class TestWalkthrough:
    async def test_report_triage_upvote_comment_and_history(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        """A citizen reports, staff acknowledge, a neighbour upvotes and comments; every read shows it."""
        ada = await sign_up(client, "Ada")
        staff = await make_user(app, client, "Sam", "staff")
        ben = await sign_up(client, "Ben")

        created = await report(client, ada, address="1 Main Street")
        issue_id = created["id"]
        assert created["version"] == 1

        listed = await client.get("/v1/issues", headers=fresh(created["position"]))
        assert listed.status_code == 200
        assert listed.headers["X-Consistency"] == "fresh"
        assert [i["id"] for i in listed.json()["items"]] == [issue_id]
        assert listed.json()["next_cursor"] is None

        ack = await client.post(
            f"/v1/issues/{issue_id}/status",
            json={"status": "acknowledged", "note": "Crew booked"},
            headers={**auth(staff), "If-Match": '"1"'},
        )
        assert ack.status_code == 200, ack.text
        assert ack.json()["version"] == 2

        vote = await client.put(f"/v1/issues/{issue_id}/upvote", headers=auth(ben))
        again = await client.put(f"/v1/issues/{issue_id}/upvote", headers=auth(ben))
        assert vote.json()["version"] == 3
        assert again.json()["version"] == 3  # one upvote per user: the second changes nothing
        said = await client.post(f"/v1/issues/{issue_id}/comments", json={"body": "Nearly fell in!"}, headers=auth(ben))
        assert said.status_code == 201

        detail = await client.get(f"/v1/issues/{issue_id}", headers=fresh(said.json()["position"]))
        body = detail.json()
        assert (body["status"], body["upvotes"], body["comments"], body["version"]) == ("acknowledged", 1, 1, 4)
        assert body["reporter_id"] == ada["user_id"]
        assert body["location"] == {"lat": 51.5074, "lon": -0.1278}
        assert body["address"] == "1 Main Street"
        assert body["department"] == "roads"
        assert [t["type"] for t in body["timeline"]] == ["reported", "status_changed", "commented"]
        assert body["timeline"][1]["note"] == "Crew booked"

        history = (await client.get(f"/v1/issues/{issue_id}/history")).json()["items"]
        assert [(h["version"], h["event_type"]) for h in history] == [
            (1, "IssueReported"),
            (2, "IssueStatusChanged"),
            (3, "IssueUpvoted"),
            (4, "IssueCommented"),
        ]
        assert history[1]["actor_id"] == staff["user_id"]

    async def test_a_new_issue_is_browsable_within_a_second_without_a_token(self, client: httpx.AsyncClient) -> None:
        """The in-process projector keeps views fresh on its own."""
        ada = await sign_up(client)
        created = await report(client, ada)
        for _ in range(100):
            listed = (await client.get("/v1/issues")).json()["items"]
            if any(i["id"] == created["id"] for i in listed):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the issue did not appear in the list within a second")

    async def test_profile_is_readable_and_changeable(self, client: httpx.AsyncClient) -> None:
        """GET /v1/users/me shows your email and roles; PATCH changes the name."""
        ada = await sign_up(client, "Ada")
        changed = await client.patch("/v1/users/me", json={"display_name": "Ada L."}, headers=auth(ada))
        assert changed.status_code == 200
        me = (await client.get("/v1/users/me", headers={**auth(ada), **fresh(changed.json()["position"])})).json()
        assert (me["display_name"], me["email"], me["roles"]) == ("Ada L.", ada["email"], ["citizen"])
        assert "password_hash" not in me

    async def test_categories_are_served(self, client: httpx.AsyncClient) -> None:
        """The seeded catalogue is browsable, each category with its department."""
        items = (await client.get("/v1/categories")).json()["items"]
        pothole = next(i for i in items if i["code"] == "pothole")
        assert (pothole["name"], pothole["department"]) == ("Pothole", "roads")
        assert pothole["description"]
        assert len(items) >= 5


class TestPagination:
    async def test_pages_cover_every_issue_once(self, client: httpx.AsyncClient) -> None:
        """Following next_cursor walks all issues, newest first, without gaps or repeats."""
        ada = await sign_up(client)
        ids = [(await report(client, ada, title=f"Issue number {n}"))["id"] for n in range(7)]
        last = await report(client, ada, title="Issue number 7")
        ids.append(last["id"])
        seen: list[str] = []
        url = "/v1/issues?limit=3"
        headers = fresh(last["position"])
        while url:
            page = (await client.get(url, headers=headers)).json()
            seen += [i["id"] for i in page["items"]]
            url = f"/v1/issues?limit=3&cursor={page['next_cursor']}" if page["next_cursor"] else ""
        assert seen == list(reversed(ids))

    async def test_filters_by_status_and_category(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        staff = await make_user(app, client, "Sam", "staff")
        hole = await report(client, ada)
        light = await report(client, ada, category="streetlight", title="Lamp out")
        done = await client.post(
            f"/v1/issues/{hole['id']}/status", json={"status": "acknowledged"}, headers=auth(staff)
        )
        token = fresh(done.json()["position"])
        by_status = (await client.get("/v1/issues?status=acknowledged", headers=token)).json()["items"]
        by_category = (await client.get("/v1/issues?category=streetlight", headers=token)).json()["items"]
        by_department = (await client.get("/v1/issues?department=lighting,roads", headers=token)).json()["items"]
        assert [i["id"] for i in by_status] == [hole["id"]]
        assert [i["id"] for i in by_category] == [light["id"]]
        assert len(by_department) == 2
