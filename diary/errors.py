"""What the rules refuse: errors the caller must correct, with the field they are about.

A message is written once, in English, as a template with named values:
`InvalidInput("text", "The text is longer than %(n)s characters.", n=limit)`.
The API answers with it as written (problem+json, diary/web/errors.py); the
pages show it in the reader's language (`translated()`), next to the field.
`make translations` extracts the templates from these calls (the second
argument of InvalidInput, UnsupportedMedia, ContentTooLarge and NotFound, the
first of Phrase).
"""

from __future__ import annotations

from flask_babel import gettext


class Phrase:
    """Part of a message with a template of its own, e.g. which record an import refuses.

    As a value of an InvalidInput (`label=Phrase("entry %(n)s", n=3)`) it is
    English in `message` and in the reader's language in `translated()`, like
    the message around it. An InvalidInput given as a value works the same way.
    """

    def __init__(self, template: str, **values: object) -> None:
        self.template = template
        self.values = values

    def __str__(self) -> str:
        return self.template % self.values if self.values else self.template

    def translated(self) -> str:
        return gettext(self.template, **_translated(self.values))


def _translated(values: dict[str, object]) -> dict[str, object]:
    return {
        name: value.translated() if isinstance(value, Phrase | InvalidInput) else value
        for name, value in values.items()
    }


class InvalidInput(Exception):
    """Input the client must correct; `field` names the form field or JSON member."""

    status = 400
    title = "Invalid input"

    def __init__(self, field: str, message: str, **values: object) -> None:
        self.field = field
        self.template = message
        self.values = values
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The message in English, as the API gives it."""
        return self.template % self.values if self.values else self.template

    def translated(self) -> str:
        """The message in the language of the current request (pages)."""
        return gettext(self.template, **_translated(self.values))


class UnsupportedMedia(InvalidInput):
    status = 415
    title = "Unsupported media type"


class ContentTooLarge(InvalidInput):
    status = 413
    title = "Content too large"


class NotFound(InvalidInput):
    """What the caller asked for is not theirs to see: absent, another user's, or in Trash."""

    status = 404
    title = "Not Found"
