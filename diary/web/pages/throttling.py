"""How often sign-in and sign-up may be tried, and the device cookie that keeps the owner in.

Failed sign-ins are counted three ways (docs/operations.md, "Sign-in throttling"):

- per client address, across accounts: one machine guessing many accounts;
- per account, for browsers without that account's device cookie: many
  machines guessing one account. When it is full those browsers are refused,
  but not the owner's own, so an attacker cannot lock the owner out;
- per device cookie: a browser that has signed in to the account before
  (OWASP's "device cookies") counts its failures apart from everyone else.

The device cookie is set on every successful sign-in: signed with SECRET_KEY,
sent only to /login, naming the account by a keyed digest of its email and the
device by a random nonce. It proves nothing but "this browser knew the
password once", so it buys no more than its own small allowance of guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from ... import accounts
from ...inputs import storable

DEVICE_COOKIE = "diary_device"
DEVICE_COOKIE_LIFETIME = timedelta(days=365)
_DEVICE_SALT = "diary.device-cookie"
# Longer is no email (RFC 5321); such keys are hashed so a huge field cannot make a huge key.
_LONGEST_EMAIL = 254


def submitted_email() -> str:
    """The email of a sign-in, whether the body was a form or JSON (both reach LoginForm)."""
    if request.form or request.files:
        email: Any = request.form.get("email", "")
    elif request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # the form refuses the body; here it only has no email
            body = None
        email = body.get("email", "") if isinstance(body, dict) else ""
    else:
        email = ""
    return accounts.normalise_email(email) if isinstance(email, str) else ""


def account_key() -> str:
    email = submitted_email()
    # A NUL or a lone surrogate cannot be a key in database:// storage (PostgreSQL).
    if len(email) > _LONGEST_EMAIL or not storable(email):
        email = "sha256:" + hashlib.sha256(email.encode("utf-8", "replace")).hexdigest()
    return "account:" + email


def _account_digest(email: str) -> str:
    key = current_app.secret_key
    secret = key.encode() if isinstance(key, str) else bytes(key or b"")
    message = accounts.normalise_email(email).encode("utf-8", "replace")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_DEVICE_SALT)


def _device() -> dict[str, str] | None:
    """The request's device cookie if it is genuine and not too old (read once per request)."""
    if "device_cookie" not in g:
        g.device_cookie = None
        raw = request.cookies.get(DEVICE_COOKIE)
        if raw:
            try:
                value = _serializer().loads(
                    raw, max_age=int(DEVICE_COOKIE_LIFETIME.total_seconds())
                )
            except BadSignature:
                value = None
            if isinstance(value, dict) and {"a", "n"} <= value.keys():
                g.device_cookie = value
    return g.device_cookie


def trusted_device() -> bool:
    """True when this browser has signed in before to the account it is trying now."""
    device = _device()
    return device is not None and hmac.compare_digest(
        device["a"], _account_digest(submitted_email())
    )


def untrusted_device() -> bool:
    return not trusted_device()


def device_key() -> str:
    device = _device()
    return "device:" + (device["n"] if device else "")


def remember_device(response: Response, email: str) -> None:
    """Give the browser that just signed in a device cookie for this account."""
    value = _serializer().dumps({"a": _account_digest(email), "n": secrets.token_urlsafe(16)})
    response.set_cookie(
        DEVICE_COOKIE,
        value,
        max_age=DEVICE_COOKIE_LIFETIME,
        path="/login",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        # Only our own sign-in form needs it; no other site's request should carry it.
        samesite="Strict",
    )


def failed_sign_in(response: Response) -> bool:
    # Only failures count, so someone who signs in often is never locked out.
    return response.status_code != 302


def signup_disabled() -> bool:
    return not current_app.config["ALLOW_SIGNUP"]


def everyone() -> str:
    """One key for the whole site: a limit on what all clients together may do."""
    return "everyone"
