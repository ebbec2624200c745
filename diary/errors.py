"""What the rules refuse: errors the caller must correct, with the field they are about.

The web layer (diary/web/errors.py) turns them into problem+json for API
clients and into messages next to the form field for browsers.
"""

from __future__ import annotations


class InvalidInput(Exception):
    """Input the client must correct; `field` names the form field or JSON member."""

    status = 400
    title = "Invalid input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnsupportedMedia(InvalidInput):
    status = 415
    title = "Unsupported media type"


class ContentTooLarge(InvalidInput):
    status = 413
    title = "Content too large"
