"""Search: Japanese without spaces, English without case, newest first, paged, indexed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade

from diary import create_app, search, tags, timeline
from diary.extensions import db
from diary.models import Entry, User

from .entries_support import add_entry
from .pages_support import page, sign_in
from .servers import postgres_database


def found(client: FlaskClient, auth: dict[str, str], q: str, **params: str) -> list[str]:
    response = client.get("/api/v1/entries", query_string={"q": q, **params}, headers=auth)
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json["items"]]


JAPANESE = ["今日の朝食はパンとコーヒー", "夕食は寿司だった", "朝の散歩で猫を見た"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("朝食", ["今日の朝食はパンとコーヒー"]),
        ("食", ["夕食は寿司だった", "今日の朝食はパンとコーヒー"]),
        ("朝", ["朝の散歩で猫を見た", "今日の朝食はパンとコーヒー"]),
        ("寿司だった", ["夕食は寿司だった"]),
        ("コーヒー", ["今日の朝食はパンとコーヒー"]),
        ("朝ごはん", []),
    ],
)
def test_japanese_queries_find_words_inside_unspaced_text(
    app: Flask,
    client: FlaskClient,
    user: User,
    auth: dict[str, str],
    query: str,
    expected: list[str],
) -> None:
    for text in JAPANESE:
        add_entry(app, user, text)
    assert found(client, auth, query) == expected


@pytest.mark.parametrize("query", ["beach", "BEACH", "Beach", "  beach  ", "to the b"])
def test_english_search_ignores_case(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str], query: str
) -> None:
    add_entry(app, user, "Went to the Beach with Ken")
    add_entry(app, user, "Stayed home and read")
    assert found(client, auth, query) == ["Went to the Beach with Ken"]


def test_all_pairs_present_is_not_enough_the_text_must_contain_the_query(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    add_entry(app, user, "ab and bc")  # holds the pairs "ab" and "bc" but not "abc"
    add_entry(app, user, "the abc of it")
    assert found(client, auth, "abc") == ["the abc of it"]


@pytest.mark.parametrize(("query", "expected"), [("100%", "100% sure"), ("a_b", "a_b file")])
def test_like_wildcards_in_the_query_are_taken_literally(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str], query: str, expected: str
) -> None:
    for text in ("100% sure", "1000 times", "a_b file", "axb file"):
        add_entry(app, user, text)
    assert found(client, auth, query) == [expected]


def test_results_are_newest_first_and_paged_by_cursor(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for day in range(5):
        add_entry(app, user, f"日記 {day}", when=start + timedelta(days=day))
        add_entry(app, user, f"unrelated {day}", when=start + timedelta(days=day, hours=1))
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/entries", query_string={"q": "日記", **params}, headers=auth)
        seen += [item["text"] for item in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"日記 {day}" for day in (4, 3, 2, 1, 0)]


def test_other_users_and_trashed_entries_are_never_found(
    app: Flask,
    client: FlaskClient,
    user: User,
    auth: dict[str, str],
    make_user: Callable[..., User],
) -> None:
    add_entry(app, make_user(), "secret 朝食 of someone else")
    add_entry(app, user, "my 朝食 in Trash", trashed_at=datetime.now(UTC))
    add_entry(app, user, "my own 朝食")
    assert found(client, auth, "朝食") == ["my own 朝食"]


def test_a_long_entry_is_found_by_words_anywhere_in_it(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    # About 3,800 distinct terms (characters and pairs), one statement on PostgreSQL.
    filler = "".join(chr(0x4E00 + n) for n in range(1_900))
    text = f"朝食 {filler} 最後の夕焼け"
    add_entry(app, user, text)
    assert found(client, auth, "朝食") == [text]
    assert found(client, auth, "夕焼け") == [text]
    assert found(client, auth, chr(0x4E00 + 1_000) + chr(0x4E00 + 1_001)) == [text]
    assert found(client, auth, chr(0x4E00 + 1_001) + chr(0x4E00 + 1_000)) == []


def test_editing_an_entry_updates_what_finds_it(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    entry_id = add_entry(app, user, "今日は晴れ")
    response = client.patch(f"/api/v1/entries/{entry_id}", json={"text": "今日は雨"}, headers=auth)
    assert response.status_code == 200
    assert found(client, auth, "晴れ") == []
    assert found(client, auth, "雨") == ["今日は雨"]


def test_search_combines_with_the_tag_filter(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    add_entry(app, user, "朝食 at home #home")
    add_entry(app, user, "朝食 in Kyoto #travel")
    assert found(client, auth, "朝食", tag="travel") == ["朝食 in Kyoto #travel"]


@pytest.mark.parametrize("bad", ["x" * 101, "a\x00b"])
def test_unusable_queries_are_refused_as_problems(
    client: FlaskClient, auth: dict[str, str], bad: str
) -> None:
    response = client.get("/api/v1/entries", query_string={"q": bad}, headers=auth)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"][0]["field"] == "q"


def test_the_search_page_marks_the_matches(app: Flask, client: FlaskClient, user: User) -> None:
    add_entry(app, user, "今日の朝食は<b>パン</b>")
    add_entry(app, user, "夕食")
    sign_in(client, user.email)
    html = page(client, "/search?q=朝食")
    assert "今日の<mark>朝食</mark>は&lt;b&gt;パン&lt;/b&gt;" in html
    assert "夕食" not in html
    assert 'value="朝食"' in html


def test_the_search_page_shows_a_bad_query_next_to_the_box(
    app: Flask, client: FlaskClient, user: User
) -> None:
    sign_in(client, user.email)
    response = client.get("/search", query_string={"q": "x" * 101})
    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.text
    assert "x" * 101 in response.text


def test_reindex_rebuilds_terms_lost_from_the_table(
    app: Flask, client: FlaskClient, user: User, auth: dict[str, str]
) -> None:
    add_entry(app, user, "朝食 #food")
    with app.app_context():
        db.session.execute(sa.text("DELETE FROM entry_terms"))
        db.session.execute(sa.text("DELETE FROM entry_tags"))
        db.session.commit()
    assert found(client, auth, "朝食") == []
    result = app.test_cli_runner().invoke(args=["reindex"])
    assert result.exit_code == 0, result.output
    assert found(client, auth, "朝食") == ["朝食 #food"]
    assert found(client, auth, "", tag="food") == ["朝食 #food"]


def _search_plan(app: Flask, user: User, query: str) -> str:
    with app.app_context():
        owner = db.session.get(User, user.id)
        select = (
            sa.select(Entry.id)
            .where(Entry.user_id == owner.id, Entry.deleted_at.is_(None))
            .where(search.matching(owner, query))
            .order_by(Entry.created_at.desc(), Entry.id.desc())
            .limit(21)
        )
        sql = str(select.compile(db.engine, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
        rows = db.session.execute(sa.text(explain + sql)).all()
        return "\n".join(str(row[-1]) for row in rows)


def test_search_reads_the_term_index_not_every_entry(app: Flask, user: User) -> None:
    """With many entries of other users, the plan reads entry_terms by its index only."""
    with app.app_context():
        noise = User(email="noise@example.com", password_hash="x")
        db.session.add(noise)
        db.session.commit()
        now = datetime.now(UTC)
        db.session.execute(
            sa.insert(Entry),
            [
                {"user_id": noise.id, "text": f"noise {n}", "created_at": now, "updated_at": now}
                for n in range(3000)
            ],
        )
        ids = db.session.scalars(sa.select(Entry.id).where(Entry.user_id == noise.id)).all()
        db.session.execute(
            sa.text("INSERT INTO entry_terms (user_id, term, entry_id) VALUES (:u, :t, :e)"),
            [{"u": noise.id, "t": term, "e": i} for i in ids for term in ("朝食", "no", "oi")],
        )
        db.session.commit()
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
    add_entry(app, user, "朝食")
    plan = _search_plan(app, user, "朝食")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        assert "entry_terms USING" in plan and "INDEX" in plan, plan
        assert "SCAN entry_terms" not in plan.replace("USING COVERING INDEX", ""), plan
    else:  # PostgreSQL
        assert "pk_entry_terms" in plan, plan
        assert "Seq Scan on entry_terms" not in plan, plan
        assert "Seq Scan on entries" not in plan, plan


@pytest.fixture(params=["sqlite", "postgresql"])
def database_at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app whose database stops at the revision before search existed."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            upgrade(revision="0003")
        yield app
        with app.app_context():
            db.engine.dispose()
        return
    with postgres_database() as url:
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        with app.app_context():
            upgrade(revision="0003")
        yield app
        with app.app_context():
            db.engine.dispose()


def test_the_migration_indexes_entries_written_before_it(database_at_0003: Flask) -> None:
    app = database_at_0003
    with app.app_context():
        now = datetime.now(UTC)
        db.session.execute(
            sa.text(
                "INSERT INTO users (email, password_hash, display_name, created_at) "
                "VALUES ('old@example.com', 'x', '', :now)"
            ),
            {"now": now},
        )
        user_id = db.session.scalar(sa.text("SELECT id FROM users"))
        for text in ("昔の朝食 #思い出", "old Breakfast"):
            db.session.execute(
                sa.text(
                    "INSERT INTO entries (user_id, text, created_at, updated_at) "
                    "VALUES (:u, :t, :now, :now)"
                ),
                {"u": user_id, "t": text, "now": now},
            )
        db.session.commit()
        upgrade()
        owner = db.session.get(User, user_id)
        for query, expected in (("朝食", ["昔の朝食 #思い出"]), ("breakfast", ["old Breakfast"])):
            page = timeline.list_entries(owner, limit=10, q=query)
            assert [entry.text for entry in page.items] == expected
        assert [(t.tag, t.count) for t in tags.list_tags(owner)] == [("思い出", 1)]
        db.session.remove()
