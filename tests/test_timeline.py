"""SQL statements per request stay constant in page size and photo count.

The API list has its own check in test_api_entries.py; these cover the HTML
timeline and the original `GET /` contract, where an N+1 would hide as well.
"""

from __future__ import annotations

import io

import pytest

from .conftest import count_statements
from .pages_support import sign_in


def post_entries(client, auth, jpeg, count: int, photos_each: int) -> None:
    for number in range(count):
        files = [(io.BytesIO(jpeg), f"{number}-{n}.jpg") for n in range(photos_each)]
        body = {"data": {"text": f"entry {number}", "file": files}} if files else {}
        answer = client.post(
            "/api/v1/entries", headers=auth, **(body or {"json": {"text": f"entry {number}"}})
        )
        assert answer.status_code == 201


@pytest.mark.parametrize("path", ["/", "/?limit=1"])
def test_timeline_statements_do_not_grow_with_entries_or_photos(
    app, client, auth, user, jpeg, path
):
    sign_in(client, user.email)
    post_entries(client, auth, jpeg, count=1, photos_each=1)
    client.get(path, headers={"Accept": "text/html"})  # warm: first-use bookkeeping

    def statements() -> int:
        with count_statements(app) as counted:
            answer = client.get(path, headers={"Accept": "text/html"})
            assert answer.status_code == 200
        return len(counted)

    few = statements()
    post_entries(client, auth, jpeg, count=5, photos_each=2)
    assert statements() == few


def test_legacy_get_statements_do_not_grow_with_photos(app, client, auth, jpeg):
    post_entries(client, auth, jpeg, count=2, photos_each=0)
    client.get("/", headers=auth).get_data()  # the token's first use records last_used_at

    def statements() -> int:
        with count_statements(app) as counted:
            client.get("/", headers=auth).get_data()
        return len(counted)

    few = statements()
    post_entries(client, auth, jpeg, count=4, photos_each=2)
    assert statements() == few


def test_legacy_get_reads_a_batch_per_statement_oldest_first(app, client, auth, monkeypatch):
    """GET / reads keyset batches: 7 entries in batches of 3 are 3 reads, no cursor to manage."""
    from diary import entries

    real = entries.iter_legacy_rows
    monkeypatch.setattr(entries, "iter_legacy_rows", lambda user: real(user, batch_size=3))
    for number in range(7):
        client.post("/", data={"text": f"entry {number}"}, headers=auth)
    client.get("/", headers=auth).get_data()  # the token's first use records last_used_at

    with count_statements(app) as counted:
        body = client.get("/", headers=auth).get_json()

    assert [row["Text"] for row in body] == [f"entry {number}" for number in range(7)]
    reads = [s for s in counted if "FROM entries" in s]
    assert len(reads) == 3
    assert not any(s.lstrip().upper().startswith(("DECLARE", "FETCH", "CLOSE")) for s in counted)
