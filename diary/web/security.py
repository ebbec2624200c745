"""Security headers on every response: a strict Content-Security-Policy and friends.

The policy allows no inline script and no other origin except the photo
bucket's, which is where presigned photo URLs point. HSTS is only sent on
requests that arrived over HTTPS (directly, or per X-Forwarded-Proto from the
one proxy ProxyFix trusts): promising HTTPS on plain-HTTP local development
would lock the browser out of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request

HSTS = "max-age=31536000; includeSubDomains"


def bucket_origins(config: Mapping[str, Any]) -> list[str]:
    """The origins presigned photo URLs can have, derived from the storage settings."""
    bucket = config.get("BUCKET")
    if not bucket:
        return []
    if endpoint := config.get("S3_ENDPOINT_URL"):
        parts = urlsplit(endpoint)
        # Path-style addressing (used with an endpoint) keeps the endpoint's origin.
        return [f"{parts.scheme}://{parts.netloc}"]
    region = config.get("AWS_REGION")
    if "." in bucket:
        # Dotted names cannot be virtual hosts under TLS; boto3 uses path style.
        return [f"https://s3.{region}.amazonaws.com"]
    # boto3 presigns with the global name; S3 may redirect to the regional one.
    return [f"https://{bucket}.s3.{region}.amazonaws.com", f"https://{bucket}.s3.amazonaws.com"]


def content_security_policy(config: Mapping[str, Any]) -> str:
    images = " ".join(["'self'", "blob:", *bucket_origins(config)])
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        # blob: lets the write form preview photos before they are sent.
        "img-src": images,
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def init_app(app: Flask) -> None:
    policy = content_security_policy(app.config)

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response
