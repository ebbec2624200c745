"""API tokens: who may call, and what each caller may see."""

from __future__ import annotations

import pytest

from diary.accounts import revoke_token
from diary.extensions import db
from diary.models import ApiToken, User


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer diary_not-a-real-token"],
)
def test_missing_or_unknown_tokens_get_401_problem_with_challenge(client, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = client.get("/api/v1/entries", headers=headers)

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["status"] == 401


def test_a_revoked_token_stops_working(app, client, user, auth):
    assert client.get("/api/v1/entries", headers=auth).status_code == 200
    with app.app_context():
        token = db.session.scalars(db.select(ApiToken)).one()
        revoke_token(db.session.get(User, user.id), token.id)

    assert client.get("/api/v1/entries", headers=auth).status_code == 401


def test_only_the_hash_of_a_token_is_stored(app, auth):
    plain = auth["Authorization"].removeprefix("Bearer ")
    with app.app_context():
        stored = db.session.scalars(db.select(ApiToken.token_hash)).one()
    assert plain not in stored and len(stored) == 64


def test_a_use_is_recorded_as_last_used(app, client, auth):
    client.get("/api/v1/entries", headers=auth)
    with app.app_context():
        assert db.session.scalars(db.select(ApiToken.last_used_at)).one() is not None


@pytest.mark.parametrize(
    ("method", "path_template", "kwargs"),
    [
        ("get", "/api/v1/entries/{id}", {}),
        ("patch", "/api/v1/entries/{id}", {"json": {"text": "mine now"}}),
        ("delete", "/api/v1/entries/{id}", {}),
    ],
)
def test_another_users_entry_is_404_never_403(
    client, auth, make_user, make_token, method, path_template, kwargs
):
    other = {"Authorization": f"Bearer {make_token(make_user())}"}
    entry_id = client.post("/api/v1/entries", json={"text": "private"}, headers=other).get_json()[
        "id"
    ]

    response = getattr(client, method)(path_template.format(id=entry_id), headers=auth, **kwargs)

    assert response.status_code == 404
    assert "private" not in response.get_data(as_text=True)
    assert client.get(f"/api/v1/entries/{entry_id}", headers=other).get_json()["text"] == "private"


def test_another_users_photo_is_404(app, client, auth, make_user, make_token, jpeg):
    import io

    other = {"Authorization": f"Bearer {make_token(make_user())}"}
    created = client.post(
        "/api/v1/entries", data={"text": "", "file": (io.BytesIO(jpeg), "p.jpg")}, headers=other
    ).get_json()
    url = created["images"][0]["url"]
    if url.startswith("http"):
        # S3 objects are private; the only way in is a short-lived signed URL,
        # handed out to the owner alone (see the entry 404 tests above).
        assert "X-Amz-Signature=" in url
        assert "X-Amz-Expires=900" in url
        return
    with client.get(url, headers=auth) as response:
        assert response.status_code == 404
    with client.get(url) as response:
        assert response.status_code == 404
