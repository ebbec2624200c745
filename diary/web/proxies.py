"""Believe X-Forwarded-For and X-Forwarded-Proto only from the platform's proxy.

A client that reaches gunicorn directly can send any X-Forwarded-For it likes.
Trusting it from every peer let one client rotate the header and never meet the
sign-in throttle (it counts per client address). So the forwarded headers are
applied only when the peer (REMOTE_ADDR) is inside TRUSTED_PROXY_CIDRS; from
anyone else they are ignored and the peer's own address is the client's.
gunicorn.conf.py gives gunicorn's forwarded_allow_ips the same list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Network

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def peer_is_trusted(address: str | None, networks: Iterable[Network]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class TrustedProxies:
    """ProxyFix (one proxy hop, X-Forwarded-For and -Proto) for trusted peers only."""

    def __init__(self, app: WSGIApplication, networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)
        self.behind_proxy = ProxyFix(app, x_for=1, x_proto=1)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if peer_is_trusted(environ.get("REMOTE_ADDR"), self.networks):
            return self.behind_proxy(environ, start_response)
        return self.app(environ, start_response)
