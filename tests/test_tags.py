"""#tags written in the text: extracted (Japanese too), filtered on, listed with counts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from diary.models import User
from diary.tags import extract_tags, tag_spans

from .entries_support import add_entry
from .pages_support import page, sign_in


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("#朝ごはん を食べた", ["朝ごはん"]),
        ("今日は京都 #旅行 #カフェ巡り", ["旅行", "カフェ巡り"]),
        ("Went out #Travel and more #travel", ["travel"]),
        ("#road-trip, then #beach.", ["road-trip", "beach"]),
        ("\uff03全角 hash", ["全角"]),  # a full-width number sign
        ("C# and page#anchor and &#39; are not tags", []),
        ("# A Markdown heading", []),
        ("issue #123 is a number", []),
        ("", []),
    ],
)
def test_tags_are_the_hash_words_of_the_text(text: str, tags: list[str]) -> None:
    assert extract_tags(text) == tags
    # The links in the rendered text point at the same tags, found in the text as typed.
    linked = [tag for _start, _end, tag in tag_spans(text)]
    assert list(dict.fromkeys(linked)) == tags


def listed(client: FlaskClient, auth: dict[str, str], **params: str) -> list[str]:
    response = client.get("/api/v1/entries", query_string=params, headers=auth)
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json["items"]]


@pytest.mark.parametrize("given", ["旅行", "#旅行"])
def test_the_tag_filter_keeps_entries_carrying_the_tag(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str], given: str
) -> None:
    add_entry(app, user, "京都へ #旅行")
    add_entry(app, user, "旅行の計画 (no tag)")
    add_entry(app, user, "#travel plans")
    assert listed(client, auth, tag=given) == ["京都へ #旅行"]


def test_the_tag_filter_is_case_insensitive(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    add_entry(app, user, "#Travel day")
    assert listed(client, auth, tag="TRAVEL") == ["#Travel day"]


@pytest.mark.parametrize("bad", ["two words", "a/b", "x" * 101, "#"])
def test_malformed_tags_are_refused_as_problems(
    client: FlaskClient, auth: dict[str, str], bad: str
) -> None:
    response = client.get("/api/v1/entries", query_string={"tag": bad}, headers=auth)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"][0]["field"] == "tag"


def test_the_tag_list_counts_live_entries_of_the_caller_only(
    app: Flask,
    client: FlaskClient,
    user: User,
    auth: dict[str, str],
    make_user: Callable[..., User],
) -> None:
    add_entry(app, user, "#朝ごはん #coffee")
    add_entry(app, user, "#朝ごはん again")
    add_entry(app, user, "#coffee in Trash #朝ごはん", trashed_at=datetime.now(UTC))
    add_entry(app, make_user(), "#coffee #secret")
    response = client.get("/api/v1/tags", headers=auth)
    assert response.status_code == 200
    assert response.json == {
        "items": [{"tag": "朝ごはん", "count": 2}, {"tag": "coffee", "count": 1}]
    }


def test_editing_the_text_changes_the_tags(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    entry_id = add_entry(app, user, "#draft idea")
    client.patch(f"/api/v1/entries/{entry_id}", json={"text": "#final idea"}, headers=auth)
    assert listed(client, auth, tag="draft") == []
    assert listed(client, auth, tag="final") == ["#final idea"]
    assert client.get("/api/v1/tags", headers=auth).json["items"] == [{"tag": "final", "count": 1}]


def test_tag_pages_list_the_tags_and_their_entries(
    app: Flask, client: FlaskClient, user: User
) -> None:
    add_entry(app, user, "パン屋さん #朝ごはん")
    add_entry(app, user, "ご飯と味噌汁 #朝ごはん")
    add_entry(app, user, "#dinner out")
    sign_in(client, user.email)
    tag_list = page(client, "/tags")
    assert '#朝ごはん <span class="count">2</span></a>' in tag_list
    assert '#dinner <span class="count">1</span></a>' in tag_list
    tag_page = page(client, "/tags/朝ごはん")
    assert "パン屋さん" in tag_page and "ご飯と味噌汁" in tag_page
    assert "dinner out" not in tag_page
