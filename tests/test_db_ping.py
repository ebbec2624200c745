"""Pooled PostgreSQL connections are checked before use only after idling (diary/db_ping.py)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from flask import Flask

from diary.extensions import db

from .conftest import token_for_new_user

PAGE = "/api/v1/entries"


def count_pings(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    pings: list[None] = []
    with app.app_context():
        dialect = db.engine.dialect
    real_ping = dialect.do_ping

    def ping(dbapi_connection: Any) -> bool:
        pings.append(None)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", ping)
    return pings


def cut_every_connection(postgres_url: str) -> None:
    """What a database restart or failover does to the pool's connections."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_connection_in_steady_use_is_not_pinged(postgres_app, monkeypatch):
    app = postgres_app(DB_PING_AFTER_IDLE_SECONDS=30.0)
    client, auth = app.test_client(), token_for_new_user(app)
    client.get(PAGE, headers=auth)
    pings = count_pings(app, monkeypatch)

    for _ in range(5):
        assert client.get(PAGE, headers=auth).status_code == 200

    assert pings == []


def test_an_idle_connection_that_was_cut_is_replaced_without_an_error(
    postgres_app, postgres_url, monkeypatch
):
    app = postgres_app(DB_PING_AFTER_IDLE_SECONDS=0.05)
    client, auth = app.test_client(), token_for_new_user(app)
    assert client.get(PAGE, headers=auth).status_code == 200
    pings = count_pings(app, monkeypatch)

    cut_every_connection(postgres_url)
    time.sleep(0.1)

    assert client.get(PAGE, headers=auth).status_code == 200
    assert pings  # the idle connection was checked, found gone and replaced


def test_a_connection_cut_while_busy_costs_one_quick_503_then_recovers(postgres_app, postgres_url):
    app = postgres_app(DB_PING_AFTER_IDLE_SECONDS=30.0)
    client, auth = app.test_client(), token_for_new_user(app)
    assert client.get(PAGE, headers=auth).status_code == 200

    cut_every_connection(postgres_url)

    failed = client.get(PAGE, headers=auth)
    assert failed.status_code == 503
    assert failed.mimetype == "application/problem+json"
    assert client.get(PAGE, headers=auth).status_code == 200
