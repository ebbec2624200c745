"""Forwarded headers count only from TRUSTED_PROXY_CIDRS (diary/web/proxies.py).

The attack: a client that reaches the container directly sends a new X-Forwarded-For with
every failed sign-in, so the per-address throttle never sees the same address twice.
"""

from __future__ import annotations

import os

import pytest

from diary import ConfigError, create_app
from diary.config import from_env

from .pages_support import BROWSER

PROXY_NETWORK = "10.40.0.0/16"


def address_in(prefix: str) -> str:
    a, b = os.urandom(2)
    return f"{prefix}.{a}.{b}"


def attacker_address() -> str:
    """Outside PROXY_NETWORK: a client connecting straight to the container."""
    a, b, c = os.urandom(3)
    return f"198.{a % 64}.{b}.{c}"


def forged_address() -> str:
    a, b, c = os.urandom(3)
    return f"203.{a}.{b}.{c}"


def failed_sign_in(client, *, peer: str, forwarded_for: str | None = None) -> int:
    headers = dict(BROWSER)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return client.post(
        "/login",
        data={"email": f"nobody-{os.urandom(4).hex()}@example.com", "password": "guess"},
        headers=headers,
        environ_base={"REMOTE_ADDR": peer},
    ).status_code


@pytest.fixture
def throttled(app_with):
    """Five failed sign-ins per address, counted in this process's memory."""
    return app_with(
        RATELIMIT_STORAGE_URI="memory://",
        SIGNIN_LIMIT_PER_ADDRESS="5 per 15 minutes",
        SIGNIN_LIMIT_PER_ACCOUNT="100 per 15 minutes",
        TRUSTED_PROXY_CIDRS=PROXY_NETWORK,
    )


def test_a_direct_client_rotating_x_forwarded_for_is_throttled_by_its_own_address(throttled):
    client = throttled.test_client()
    attacker = attacker_address()

    statuses = [
        failed_sign_in(client, peer=attacker, forwarded_for=forged_address()) for _ in range(6)
    ]

    assert statuses == [401] * 5 + [429]
    # The forged addresses were never counted: someone else at one of them is unaffected.
    assert failed_sign_in(client, peer=address_in("10.40"), forwarded_for=forged_address()) == 401


def test_through_the_trusted_proxy_each_client_has_its_own_count(throttled):
    client = throttled.test_client()
    proxy = address_in("10.40")

    # Ten clients behind one load balancer, each failing once: nobody is throttled.
    assert [
        failed_sign_in(client, peer=proxy, forwarded_for=forged_address()) for _ in range(10)
    ] == [401] * 10
    one_client = forged_address()
    statuses = [failed_sign_in(client, peer=proxy, forwarded_for=one_client) for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_only_the_address_the_proxy_appended_counts(throttled):
    """X-Forwarded-For is a list the client can start: the proxy's own entry is the last."""
    client = throttled.test_client()
    proxy = address_in("10.40")
    client_address = forged_address()

    statuses = [
        failed_sign_in(client, peer=proxy, forwarded_for=f"{forged_address()}, {client_address}")
        for _ in range(6)
    ]

    assert statuses == [401] * 5 + [429]


def test_by_default_nobody_is_trusted(app_with):
    app = app_with(
        RATELIMIT_STORAGE_URI="memory://",
        SIGNIN_LIMIT_PER_ADDRESS="5 per 15 minutes",
        SIGNIN_LIMIT_PER_ACCOUNT="100 per 15 minutes",
    )
    assert app.config["TRUSTED_PROXY_CIDRS"] == ()
    client = app.test_client()
    peer = address_in("10.40")

    statuses = [failed_sign_in(client, peer=peer, forwarded_for=forged_address()) for _ in range(6)]

    assert statuses == [401] * 5 + [429]


def test_a_forged_x_forwarded_proto_does_not_make_a_direct_request_https(throttled):
    client = throttled.test_client()
    https = {**BROWSER, "X-Forwarded-Proto": "https"}

    direct = client.get("/login", headers=https, environ_base={"REMOTE_ADDR": attacker_address()})
    proxied = client.get("/login", headers=https, environ_base={"REMOTE_ADDR": "10.40.0.9"})

    assert "Strict-Transport-Security" not in direct.headers
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")


def test_an_ipv4_peer_on_a_dual_stack_listener_is_matched_by_its_ipv4_network(throttled):
    client = throttled.test_client()
    https = {**BROWSER, "X-Forwarded-Proto": "https"}

    response = client.get("/login", headers=https, environ_base={"REMOTE_ADDR": "::ffff:10.40.1.2"})

    assert "Strict-Transport-Security" in response.headers


def test_the_environment_sets_the_trusted_networks():
    config = from_env({"TRUSTED_PROXY_CIDRS": " 10.40.0.0/16, 2001:db8::/32 ,192.0.2.7"})
    assert [str(network) for network in config["TRUSTED_PROXY_CIDRS"]] == [
        "10.40.0.0/16",
        "2001:db8::/32",
        "192.0.2.7/32",
    ]
    assert from_env({"TRUSTED_PROXY_CIDRS": ""})["TRUSTED_PROXY_CIDRS"] == ()


@pytest.mark.parametrize(
    "value", ["10.40.0.0/33", "10.40.0.1/16", "*", "vpc", "10.40.0.0/16;10.0.0.0/8"]
)
def test_a_bad_network_stops_the_app_naming_the_variable(value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_CIDRS") as error:
        from_env({"TRUSTED_PROXY_CIDRS": value})
    assert "comma-separated list of CIDRs" in str(error.value)


def test_a_bad_network_in_the_test_config_is_refused_too(tmp_path):
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_CIDRS"):
        create_app(
            {
                "TESTING": True,
                "TRUSTED_PROXY_CIDRS": "10.0.0.0/99",
                "LOCAL_STORAGE_DIR": str(tmp_path),
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.sqlite3'}",
            }
        )
