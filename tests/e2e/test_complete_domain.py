"""The complete domain over HTTP: moderation, duplicates, the admin catalogue, roles, sessions, photos, limits."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from PIL import Image

from snapfix.app import create_app
from snapfix.settings import DEV_SECRET
from tests.conftest import embedded_settings
from tests.e2e.test_errors_and_invariants import assert_problem
from tests.helpers import PASSWORD, auth, fresh, make_user, report, sign_up

GPS_IFD = 0x8825


def jpeg_with_gps(size: tuple[int, int] = (640, 480)) -> bytes:
    """A real JPEG whose EXIF carries a GPS position and a camera make."""
    image = Image.new("RGB", size, (180, 40, 40))
    exif = image.getexif()
    exif[0x010F] = "PhoneCo"
    exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 40.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


async def eventually(probe: Any, timeout: float = 5.0) -> Any:
    """Poll an async probe until it returns something truthy (process managers run in the background)."""
    for _ in range(int(timeout / 0.05)):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


class TestModeration:
    async def test_a_hidden_issue_leaves_public_views_but_stays_in_its_history(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        ada = await sign_up(client)
        sam = await make_user(app, client, "Sam", "staff")
        issue = await report(client, ada)
        refused = await client.post(
            f"/v1/issues/{issue['id']}/moderation", json={"action": "hide", "reason": "mine"}, headers=auth(ada)
        )
        assert_problem(refused, 403, "forbidden")
        hidden = await client.post(
            f"/v1/issues/{issue['id']}/moderation", json={"action": "hide", "reason": "abusive"}, headers=auth(sam)
        )
        assert hidden.status_code == 200, hidden.text
        token = fresh(hidden.json()["position"])
        assert_problem(await client.get(f"/v1/issues/{issue['id']}", headers=token), 404, "not-found")
        assert (await client.get("/v1/issues", headers=token)).json()["items"] == []
        history = (await client.get(f"/v1/issues/{issue['id']}/history")).json()["items"]
        assert [h["event_type"] for h in history] == ["IssueReported", "IssueHidden"]

        shown = await client.post(
            f"/v1/issues/{issue['id']}/moderation", json={"action": "unhide", "reason": "appeal"}, headers=auth(sam)
        )
        detail = await client.get(f"/v1/issues/{issue['id']}", headers=fresh(shown.json()["position"]))
        assert detail.status_code == 200
        assert [t["type"] for t in detail.json()["timeline"]][-2:] == ["hidden", "unhidden"]

    async def test_a_hidden_comment_disappears_and_the_count_follows(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        ada = await sign_up(client)
        sam = await make_user(app, client, "Sam", "staff")
        issue = await report(client, ada)
        await client.post(f"/v1/issues/{issue['id']}/comments", json={"body": "Fine words"}, headers=auth(ada))
        said = await client.post(f"/v1/issues/{issue['id']}/comments", json={"body": "Rude words"}, headers=auth(ada))
        detail = (await client.get(f"/v1/issues/{issue['id']}", headers=fresh(said.json()["position"]))).json()
        rude = detail["comment_list"][1]["id"]
        hidden = await client.post(
            f"/v1/issues/{issue['id']}/comments/{rude}/moderation",
            json={"action": "hide", "reason": "insults"},
            headers=auth(sam),
        )
        assert hidden.status_code == 200, hidden.text
        detail = (await client.get(f"/v1/issues/{issue['id']}", headers=fresh(hidden.json()["position"]))).json()
        assert [c["body"] for c in detail["comment_list"]] == ["Fine words"]
        assert detail["comments"] == 1
        missing = await client.post(
            f"/v1/issues/{issue['id']}/comments/nope/moderation",
            json={"action": "hide", "reason": "x"},
            headers=auth(sam),
        )
        assert_problem(missing, 404, "not-found")


class TestDuplicates:
    async def test_the_original_lists_its_duplicates_and_counts_their_upvotes(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        sam = await make_user(app, client, "Sam", "staff")
        original, dup = await report(client, ada), await report(client, ben)
        await client.put(f"/v1/issues/{dup['id']}/upvote", headers=auth(ada))
        await client.put(f"/v1/issues/{dup['id']}/upvote", headers=auth(ben))
        await client.put(f"/v1/issues/{original['id']}/upvote", headers=auth(ben))
        marked = await client.post(
            f"/v1/issues/{dup['id']}/duplicate-of", json={"issue_id": original["id"]}, headers=auth(sam)
        )
        body = (await client.get(f"/v1/issues/{original['id']}", headers=fresh(marked.json()["position"]))).json()
        assert body["duplicates"] == [{"id": dup["id"], "upvotes": 2}]
        assert (body["upvotes"], body["upvotes_total"]) == (1, 3)
        late = await client.put(f"/v1/issues/{dup['id']}/upvote", headers=auth(sam))
        assert_problem(late, 409, "invalid-transition")


class TestCatalogue:
    async def test_admins_define_categories_with_typed_questions_that_reports_must_answer(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        root = await make_user(app, client, "Root", "admin")
        ada = await sign_up(client)
        body = {
            "name": "Bench",
            "description": "A broken public bench",
            "department": "parks",
            "attributes": [{"code": "seats", "datatype": "number", "required": True}],
        }
        assert_problem(await client.put("/v1/categories/bench", json=body, headers=auth(ada)), 403, "forbidden")
        defined = await client.put("/v1/categories/bench", json=body, headers=auth(root))
        assert defined.status_code == 200, defined.text

        async def listed() -> bool:
            items = (await client.get("/v1/categories")).json()["items"]
            return "bench" in {c["code"] for c in items}

        await eventually(listed)  # the catalogue route takes no consistency token
        fields = {"category": "bench"}
        unanswered = await client.post(
            "/v1/issues",
            json={"title": "Bench", "description": "Broken", "location": {"lat": 1, "lon": 1}, **fields},
            headers=auth(ada),
        )
        assert_problem(unanswered, 422, "invalid-command")
        created = await report(client, ada, category="bench", attributes={"seats": 3})
        detail = (await client.get(f"/v1/issues/{created['id']}", headers=fresh(created["position"]))).json()
        assert (detail["department"], detail["attributes"]) == ("parks", {"seats": 3})
        retired = await client.delete("/v1/categories/bench", headers=auth(root))
        assert retired.status_code == 200
        refused = await client.post(
            "/v1/issues",
            json={"title": "Bench 2", "description": "x", "location": {"lat": 1, "lon": 1}, **fields},
            headers=auth(ada),
        )
        assert_problem(refused, 422, "invalid-command")


class TestRoles:
    async def test_admins_grant_and_revoke_roles_and_citizens_cannot(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        root = await make_user(app, client, "Root", "admin")
        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        url = f"/v1/users/{ben['user_id']}/roles/staff"
        assert_problem(await client.put(url, headers=auth(ada)), 403, "forbidden")
        granted = await client.put(url, headers=auth(root))
        assert granted.status_code == 200
        assert (await client.put(url, headers=auth(root))).json()["version"] == granted.json()["version"]
        me = (await client.get("/v1/users/me", headers={**auth(ben), **fresh(granted.json()["position"])})).json()
        assert me["roles"] == ["citizen", "staff"]
        revoked = await client.delete(url, headers=auth(root))
        assert revoked.json()["version"] == granted.json()["version"] + 1
        assert_problem(
            await client.put(f"/v1/users/{ben['user_id']}/roles/mayor", headers=auth(root)), 422, "validation-error"
        )


async def tokens_of(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


class TestSessions:
    async def test_refresh_rotates_and_a_reused_token_revokes_the_whole_family(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        first = await tokens_of(client, ada["email"])
        second = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200
        reused = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert_problem(reused, 401, "refresh-token-reused")
        # the thief's copy is dead, and so is the legitimate holder's newer token
        newer = await client.post("/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
        assert_problem(newer, 401, "invalid-token")
        # other sessions of the same user are unaffected
        other = await tokens_of(client, ada["email"])
        assert (
            await client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
        ).status_code == 200

    async def test_sign_out_ends_the_session(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        pair = await tokens_of(client, ada["email"])
        out = await client.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert out.status_code == 204
        after = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_problem(after, 401, "invalid-token")


def forged(claims: dict[str, Any], key: str = DEV_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


class TestTokens:
    async def _claims(self, client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
        ada = await sign_up(client)
        token = ada["Authorization"].removeprefix("Bearer ")
        return jwt.decode(token, options={"verify_signature": False}), token

    async def test_a_tampered_token_is_rejected(self, client: httpx.AsyncClient) -> None:
        claims, token = await self._claims(client)
        header, payload, signature = token.split(".")
        promoted = jwt.utils.base64url_encode(jwt.api_jws.json.dumps({**claims, "roles": ["admin"]}).encode()).decode()
        for bad in (f"{header}.{promoted}.{signature}", f"{header}.{payload}.{signature[:-2]}xx"):
            response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {bad}"})
            assert_problem(response, 401, "unauthorized")

    async def test_alg_none_expired_wrong_audience_and_wrong_key_are_rejected(self, client: httpx.AsyncClient) -> None:
        claims, _ = await self._claims(client)
        expired_at = int(claims["iat"]) - 10
        bad_tokens = [
            jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
            forged({**claims, "exp": expired_at, "iat": expired_at - 900, "nbf": expired_at - 900}),
            forged({**claims, "aud": "another-api"}),
            forged({**claims, "iss": "someone-else"}),
            forged(claims, "a-different-secret-of-enough-length-0123456789"),
            "not.a.jwt",
        ]
        for bad in bad_tokens:
            response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {bad}"})
            assert_problem(response, 401, "unauthorized")


class TestPhotos:
    async def test_a_jpeg_with_gps_comes_back_without_metadata_and_gets_a_thumbnail(
        self, client: httpx.AsyncClient
    ) -> None:
        ada = await sign_up(client)
        issue = await report(client, ada)
        raw = jpeg_with_gps()
        assert Image.open(io.BytesIO(raw)).getexif().get_ifd(GPS_IFD)
        uploaded = await client.post(
            f"/v1/issues/{issue['id']}/photos",
            files={"file": ("pothole.jpg", raw, "image/jpeg")},
            headers=auth(ada),
        )
        assert uploaded.status_code == 201, uploaded.text
        detail = (await client.get(f"/v1/issues/{issue['id']}", headers=fresh(uploaded.json()["position"]))).json()
        [photo] = detail["photos"]
        assert "blob_key" not in photo
        served = await client.get(photo["url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        back = Image.open(io.BytesIO(served.content))
        assert back.size == (640, 480)
        assert dict(back.getexif()) == {}
        assert not back.getexif().get_ifd(GPS_IFD)

        async def thumbnail() -> httpx.Response | None:
            response = await client.get(f"{photo['url']}/thumbnail")
            return response if response.status_code == 200 else None

        thumb = await eventually(thumbnail)
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320

        async def thumbnailed() -> list[dict[str, Any]] | None:  # the blob can be served before its event is folded
            items = (await client.get(f"/v1/issues/{issue['id']}/history")).json().get("items") or [{}]
            return items if items[-1].get("event_type") == "IssuePhotoThumbnailed" else None

        history = await eventually(thumbnailed)
        assert [h["event_type"] for h in history][-2:] == ["IssuePhotoAdded", "IssuePhotoThumbnailed"]

    async def test_a_non_image_with_an_image_content_type_is_refused(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        issue = await report(client, ada)
        response = await client.post(
            f"/v1/issues/{issue['id']}/photos",
            files={"file": ("evil.jpg", b"<script>alert(1)</script>" * 20, "image/jpeg")},
            headers=auth(ada),
        )
        assert_problem(response, 415, "unsupported-image")
        read = await client.get(f"/v1/issues/{issue['id']}/history", headers=fresh(issue["position"]))
        history = read.json()["items"]
        assert [h["event_type"] for h in history] == ["IssueReported"]

    async def test_only_the_reporter_and_staff_add_photos(self, client: httpx.AsyncClient) -> None:
        ada, ben = await sign_up(client, "Ada"), await sign_up(client, "Ben")
        issue = await report(client, ada)
        response = await client.post(
            f"/v1/issues/{issue['id']}/photos",
            files={"file": ("p.jpg", jpeg_with_gps(), "image/jpeg")},
            headers=auth(ben),
        )
        assert_problem(response, 403, "forbidden")

    async def test_too_many_bytes_or_pixels_is_413(self, tmp_path: Path) -> None:
        settings = embedded_settings(tmp_path, photo_max_bytes=20_000, photo_max_pixels=100_000)
        application = create_app(settings, "all")
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ada = await sign_up(client)
                issue = await report(client, ada)
                url = f"/v1/issues/{issue['id']}/photos"
                noise = Image.effect_noise((400, 400), 100).convert("RGB")
                out = io.BytesIO()
                noise.save(out, "PNG")
                big = await client.post(url, files={"file": ("n.png", out.getvalue(), "image/png")}, headers=auth(ada))
                assert_problem(
                    big, 413, "body-too-large" if len(out.getvalue()) > 20_000 + 65536 else "image-too-large"
                )
                many = jpeg_with_gps((1000, 1000))
                assert len(many) < 20_000
                wide = await client.post(url, files={"file": ("w.jpg", many, "image/jpeg")}, headers=auth(ada))
                assert_problem(wide, 413, "image-too-large")


class TestLimits:
    async def test_bodies_over_the_limit_are_413_problems(self, client: httpx.AsyncClient) -> None:
        ada = await sign_up(client)
        huge = {"body": "x" * (2 * 1024 * 1024)}
        response = await client.post("/v1/issues/abc/comments", json=huge, headers=auth(ada))
        assert_problem(response, 413, "body-too-large")

    async def test_sign_in_and_writes_are_rate_limited_with_retry_after(self, tmp_path: Path) -> None:
        settings = embedded_settings(tmp_path, rate_limit_sign_ins=3, rate_limit_user_writes=2)
        application = create_app(settings, "all")
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ada = await sign_up(client)  # one sign-in
                for _ in range(2):
                    await client.post("/v1/auth/token", data={"username": ada["email"], "password": "wrong password"})
                limited = await client.post("/v1/auth/token", data={"username": ada["email"], "password": PASSWORD})
                body = assert_problem(limited, 429, "rate-limited")
                assert int(limited.headers["retry-after"]) >= 1
                assert body["detail"]
                await report(client, ada)
                await report(client, ada)
                third = await client.post("/v1/issues", json={}, headers=auth(ada))
                assert_problem(third, 429, "rate-limited")
                assert (await client.get("/v1/issues")).status_code == 200  # reads are not limited
