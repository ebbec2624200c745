"""A JSON document read one value at a time, so a large or padded file never sits in memory whole.

An import's index (entries.json, a Day One journal, the original service's
array) is one JSON document holding a list of records. `json.loads` needs
the bytes, their decoded text and every object at once: a 96 MB entries.json
padded with white space took a worker to 2.5 GB. Here the bytes are decoded a
piece at a time and each value is parsed alone (by the standard decoder), so
memory holds a piece of text and one record, and the bytes read are counted
as they come.

    reader = JsonReader(stream, max_bytes=..., max_value_chars=...)
    if reader.start() == "{":
        for key in reader.members():
            if key == "entries" and reader.peek() == "[":
                for item in reader.items(): ...
            else:
                value = reader.value()
    reader.finish()
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO, Any

PIECE_BYTES = 64 * 1024

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class JsonError(ValueError):
    """The document is not UTF-8 JSON, or not laid out as the caller reads it."""


class DocumentTooLarge(Exception):
    """More bytes than `max_bytes` were read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class ValueTooLarge(Exception):
    """One value (a record) is longer than `max_value_chars`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a value longer than {limit} characters")
        self.limit = limit


class JsonReader:
    """Pull values out of a JSON document in order; see the module's docstring."""

    def __init__(self, stream: IO[bytes], *, max_bytes: int, max_value_chars: int) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.max_value_chars = max_value_chars
        self.bytes_read = 0
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""
        self._at = 0  # read position in _text
        self._dropped = 0  # characters before _text, for error positions
        self._ended = False

    # --- the text, a piece at a time ---------------------------------------

    def _more(self) -> bool:
        """Decode one more piece of the stream onto the text; False once it has ended."""
        if self._ended:
            return False
        data = self.stream.read(PIECE_BYTES)
        self.bytes_read += len(data)
        if self.bytes_read > self.max_bytes:
            raise DocumentTooLarge(self.max_bytes)
        try:
            piece = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as error:
            raise JsonError(f"not UTF-8 ({error.reason})") from None
        self._ended = not data
        # What has been parsed is dropped, so the text never grows past one value.
        self._dropped += self._at
        self._text = self._text[self._at :] + piece
        self._at = 0
        return True

    def peek(self) -> str:
        """The next character that is not white space, not consumed; "" at the end."""
        while True:
            self._at = _SPACE.match(self._text, self._at).end()  # type: ignore[union-attr]
            if self._at < len(self._text):
                return self._text[self._at]
            if not self._more():
                return ""

    def start(self) -> str:
        """ "{" or "[" when the document is an object or an array. Any other document is
        parsed whole (what is not JSON at all is a JsonError) and gives ""."""
        first = self.peek()
        if first in ("{", "["):
            return first
        self.value()
        self.finish()
        return ""

    def _expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self._error(f"expected {what}")
        self._at += 1

    def _error(self, message: str) -> JsonError:
        return JsonError(f"{message} at character {self._dropped + self._at + 1}")

    # --- values ------------------------------------------------------------

    def value(self) -> Any:
        """The next whole value (a record, a string, a number ...), parsed alone."""
        self.peek()
        wanted = PIECE_BYTES
        while True:
            try:
                value, end = _DECODER.raw_decode(self._text, self._at)
            except json.JSONDecodeError as error:
                if self._ended:
                    raise JsonError(
                        f"{error.msg} at character {self._dropped + error.pos + 1}"
                    ) from None
            except RecursionError:
                raise self._error("arrays or objects nested too deeply") from None
            except ValueError as error:  # an integer of more digits than Python converts
                raise self._error(str(error).split(";")[0]) from None
            else:
                # A number at the end of the text may go on in the next piece.
                if end - self._at > self.max_value_chars:
                    raise ValueTooLarge(self.max_value_chars)
                if end < len(self._text) or self._ended:
                    self._at = end
                    return value
            if len(self._text) - self._at > self.max_value_chars:
                raise ValueTooLarge(self.max_value_chars)
            # Read until the unparsed text has doubled, so a long value is
            # parsed a few times at most rather than once per piece.
            wanted = max(wanted, 2 * (len(self._text) - self._at))
            while len(self._text) - self._at < wanted and self._more():
                pass

    def items(self) -> Iterator[Any]:
        """The values of the array that comes next, one at a time."""
        self._expect("[", "an array")
        if self.peek() == "]":
            self._at += 1
            return
        while True:
            yield self.value()
            following = self.peek()
            self._at += 1
            if following == "]":
                return
            if following != ",":
                self._at -= 1
                raise self._error("expected , or ] in an array")

    def members(self) -> Iterator[str]:
        """The names of the object that comes next; read each one's value before the next name."""
        self._expect("{", "an object")
        if self.peek() == "}":
            self._at += 1
            return
        while True:
            if self.peek() != '"':
                raise self._error("expected a member name")
            name = self.value()
            self._expect(":", ": after a member name")
            yield name
            following = self.peek()
            self._at += 1
            if following == "}":
                return
            if following != ",":
                self._at -= 1
                raise self._error("expected , or } in an object")

    def finish(self) -> None:
        """Refuse anything but white space after the document."""
        if self.peek() != "":
            raise self._error("extra data after the document")
