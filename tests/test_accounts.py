"""The account rules in diary/accounts.py, below the pages and the API."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from diary.accounts import authenticate


@contextmanager
def hash_computations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict]]]:
    """Record every password hash computed inside the block, with its parameters."""
    computed: list[tuple[str, dict]] = []
    with monkeypatch.context() as patch:
        for name in ("scrypt", "pbkdf2_hmac"):
            original = getattr(hashlib, name)

            def spy(*args, _name=name, _original=original, **kwargs):
                parameters = {key: value for key, value in kwargs.items() if key != "salt"}
                computed.append((_name, parameters))
                return _original(*args, **kwargs)

            patch.setattr(hashlib, name, spy)
        yield computed


def test_an_unknown_email_costs_the_same_single_hash_as_a_wrong_password(app, user, monkeypatch):
    with app.app_context():
        # The stand-in hash for unknown emails is made once per process, before any counting.
        authenticate("warm-up@example.com", "anything")
        costs = {}
        for label, email in (
            ("known account", user.email),
            ("unknown email", "nobody@example.com"),
            ("another unknown email", "nobody-else@example.com"),
        ):
            with hash_computations(monkeypatch) as computed:
                assert authenticate(email, "not the password") is None
            costs[label] = computed

    assert [len(computed) for computed in costs.values()] == [1, 1, 1]
    # The same function with the same cost parameters (N, r, p, length), not just as many calls.
    assert costs["unknown email"] == costs["known account"]
    assert costs["known account"][0][0] == "scrypt"


def test_the_right_password_still_signs_in_with_one_hash(app, user, monkeypatch):
    with app.app_context(), hash_computations(monkeypatch) as computed:
        assert authenticate(user.email.upper(), "correct horse battery").id == user.id
    assert len(computed) == 1
