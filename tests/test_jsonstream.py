"""The import's JSON index is read a value at a time: same values as json.loads, bounded memory."""

from __future__ import annotations

import io
import json
import os
import tracemalloc

import pytest

from diary.archive import jsonstream
from diary.archive.jsonstream import DocumentTooLarge, JsonError, JsonReader, ValueTooLarge

WHITESPACE = bytes.maketrans(bytes(range(256)), b" \t\n\r" * 64)


def padding(size: int) -> bytes:
    """White space that does not compress much: random spaces, tabs and line ends."""
    return os.urandom(size).translate(WHITESPACE)


def reader_of(data: bytes, **limits: int) -> JsonReader:
    limits = {"max_bytes": 1 << 30, "max_value_chars": 1 << 20, **limits}
    return JsonReader(io.BytesIO(data), **limits)


def read_all(reader: JsonReader) -> object:
    """The document rebuilt through the reader, the way the import reads it."""
    if reader.start() == "{":
        document = {}
        for name in reader.members():
            if reader.peek() == "[":
                document[name] = list(reader.items())
            else:
                document[name] = reader.value()
    else:
        document = list(reader.items())
    reader.finish()
    return document


DOCUMENTS = [
    {"format": "diary-export", "version": 1, "entries": [{"text": "日記 🌸", "n": 12345}] * 5},
    {"entries": [], "metadata": {"version": "1.0"}, "n": -1.5e10},
    [{"ID": 1, "Text": 'a "quoted" \\ é'}, 1234567890, None, True, "x" * 300],
    {},
    [],
]


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("piece", [1, 3, 7, 64 * 1024])
def test_values_come_out_as_json_loads_reads_them_whatever_the_piece_size(
    monkeypatch, document, piece
):
    # Pieces of a few bytes split numbers, strings and UTF-8 sequences anywhere.
    monkeypatch.setattr(jsonstream, "PIECE_BYTES", piece)
    data = b"\xef\xbb\xbf" + json.dumps(document, ensure_ascii=False, indent=1).encode()

    assert read_all(reader_of(data)) == json.loads(data.decode("utf-8-sig"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "Expecting value"),
        (b'{"a": 1,}', "expected a member name"),
        (b'{"a" 1}', "expected :"),
        (b"[1 2]", "expected , or ]"),
        (b'{"a": 1} x', "extra data"),
        (b'{"a": [1, 2', "expected , or ]"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"", "Expecting value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[" + b"1" * 5000 + b"]", "Exceeds the limit"),
    ],
)
def test_what_is_not_json_is_a_json_error(data, message):
    with pytest.raises(JsonError, match=message):
        read_all(reader_of(data))


def test_the_bytes_read_are_counted_against_the_limit():
    data = b"[" + b" " * 5000 + b"]"

    with pytest.raises(DocumentTooLarge):
        read_all(reader_of(data, max_bytes=4096))


def test_one_value_may_not_be_longer_than_its_limit():
    data = json.dumps([{"text": "x" * 5000}]).encode()

    with pytest.raises(ValueTooLarge):
        read_all(reader_of(data, max_value_chars=1000))


def test_a_padded_document_is_read_in_memory_far_smaller_than_it(monkeypatch):
    """16 MB of white space around two records: json.loads needed it twice over, and more."""
    data = b'{"entries": [{"text": "a"},' + padding(16 * 1024 * 1024) + b'{"text": "b"}]}'

    tracemalloc.start()
    try:
        document = read_all(reader_of(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert document == {"entries": [{"text": "a"}, {"text": "b"}]}
    assert peak < 1024 * 1024, f"peak {peak} bytes for a {len(data)}-byte document"
