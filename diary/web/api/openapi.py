"""The OpenAPI 3.1 description of the API, served at /api/v1/openapi.json.

Kept beside the views it describes; tests validate the document and check
real responses against its schemas, so it cannot drift silently.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from . import bp

PROBLEM = {"$ref": "#/components/responses/Problem"}
# The JSON body that writes an entry's text (POST and PATCH alike).
TEXT_BODY = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 20000}},
    "required": ["text"],
}
ENTRY_ID = {
    "name": "entry_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
        },
    }


# Tags, export and import.
ARCHIVE_AND_TAG_PATHS: dict[str, Any] = {
    "/api/v1/tags": {
        "get": {
            "operationId": "listTags",
            "summary": "The caller's tags with how many live entries carry each, most used first.",
            "responses": {"200": _json("TagList", "The tags."), "401": PROBLEM},
        }
    },
    "/api/v1/export": {
        "get": {
            "operationId": "exportDiary",
            "summary": "Every live entry with its photos as one ZIP (docs/export-format.md).",
            "responses": {
                "200": {
                    "description": "The archive, streamed.",
                    "content": {"application/zip": {"schema": {"type": "string"}}},
                },
                "401": PROBLEM,
                "503": PROBLEM,
            },
        }
    },
    "/api/v1/import": {
        "post": {
            "operationId": "importDiary",
            "summary": (
                "Import a diary export ZIP or a Day One JSON export (or its ZIP). "
                "All or nothing; entries already imported are skipped."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string"}},
                            "required": ["file"],
                        }
                    }
                },
            },
            "responses": {
                "200": _json("ImportResult", "What was imported."),
                "400": PROBLEM,
                "401": PROBLEM,
                "413": PROBLEM,
                "503": PROBLEM,
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "diary API",
        "version": "1.0.0",
        "description": (
            "Diary entries with photos. Every request needs `Authorization: Bearer <token>` "
            "(create one with `flask --app diary tokens create`). Errors are RFC 9457 "
            "problem details."
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/entries": {
            "get": {
                "operationId": "listEntries",
                "summary": "The caller's entries, newest first, one page at a time.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "`next_cursor` of the previous page.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "q",
                        "in": "query",
                        "description": (
                            "Only entries whose text contains this, case-insensitively; "
                            "works for Japanese (no spaces needed), from one character."
                        ),
                        "schema": {"type": "string", "maxLength": 100},
                    },
                    {
                        "name": "tag",
                        "in": "query",
                        "description": "Only entries with this #tag (the # is optional).",
                        "schema": {"type": "string", "maxLength": 100},
                    },
                ],
                "responses": {
                    "200": _json("EntryPage", "A page of entries."),
                    "400": PROBLEM,
                    "401": PROBLEM,
                },
            },
            "post": {
                "operationId": "createEntry",
                "summary": "Write an entry, with zero or more photos.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "text": {"type": "string"},
                                    "file": {
                                        "type": "array",
                                        "items": {"type": "string", "contentMediaType": "image/*"},
                                    },
                                },
                            }
                        },
                        "application/json": {"schema": TEXT_BODY},
                    },
                },
                "responses": {
                    "201": {
                        **_json("Entry", "The entry as stored."),
                        "headers": {
                            "Location": {
                                "description": "The entry's URL.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "400": PROBLEM,
                    "401": PROBLEM,
                    "413": PROBLEM,
                    "415": PROBLEM,
                    "503": PROBLEM,
                },
            },
        },
        "/api/v1/entries/{entry_id}": {
            "parameters": [ENTRY_ID],
            "get": {
                "operationId": "getEntry",
                "responses": {"200": _json("Entry", "The entry."), "401": PROBLEM, "404": PROBLEM},
            },
            "patch": {
                "operationId": "updateEntry",
                "summary": "Replace the entry's text.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": TEXT_BODY}},
                },
                "responses": {
                    "200": _json("Entry", "The updated entry."),
                    "400": PROBLEM,
                    "401": PROBLEM,
                    "404": PROBLEM,
                },
            },
            "delete": {
                "operationId": "deleteEntry",
                "summary": "Move the entry to Trash.",
                "responses": {
                    "204": {"description": "Moved to Trash."},
                    "401": PROBLEM,
                    "404": PROBLEM,
                },
            },
        },
        **ARCHIVE_AND_TAG_PATHS,
        "/": {
            "get": {
                "operationId": "legacyList",
                "summary": "The original service's contract: all entries, oldest first (streamed).",
                "responses": {
                    "200": {
                        "description": "Every live entry of the caller.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/LegacyEntry"},
                                }
                            }
                        },
                    },
                    "401": PROBLEM,
                },
            },
            "post": {
                "operationId": "legacyCreate",
                "summary": "The original service's contract: one entry, one optional photo.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "text": {"type": "string"},
                                    "file": {"type": "string", "contentMediaType": "image/*"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("LegacyEntry", "The entry as stored."),
                    "400": PROBLEM,
                    "401": PROBLEM,
                    "413": PROBLEM,
                    "415": PROBLEM,
                    "503": PROBLEM,
                },
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Problem": {
                "description": "RFC 9457 problem details.",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        },
        "schemas": {
            "Image": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "id",
                    "url",
                    "content_type",
                    "width",
                    "height",
                    "bytes",
                    "original_filename",
                    "display_url",
                    "thumbnail_url",
                ],
                "properties": {
                    "id": {"type": "integer"},
                    "url": {
                        "type": "string",
                        "description": "Presigned URL (S3) or the app's own (local storage).",
                    },
                    "content_type": {"type": "string"},
                    "width": {"type": "integer", "minimum": 1},
                    "height": {"type": "integer", "minimum": 1},
                    "bytes": {"type": "integer", "minimum": 1},
                    "original_filename": {"type": "string"},
                    "display_url": {
                        "type": "string",
                        "description": "About 1600 px on the long side, WebP.",
                    },
                    "thumbnail_url": {
                        "type": "string",
                        "description": "About 400 px on the long side, WebP.",
                    },
                },
            },
            "Entry": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "text", "created_at", "updated_at", "images"],
                "properties": {
                    "id": {"type": "integer"},
                    "text": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
                },
            },
            "EntryPage": {
                "type": "object",
                "additionalProperties": False,
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
            "TagList": {
                "type": "object",
                "additionalProperties": False,
                "required": ["items"],
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["tag", "count"],
                            "properties": {
                                "tag": {"type": "string"},
                                "count": {"type": "integer", "minimum": 1},
                            },
                        },
                    }
                },
            },
            "ImportResult": {
                "type": "object",
                "additionalProperties": False,
                "required": ["imported", "skipped"],
                "properties": {
                    "imported": {"type": "integer", "minimum": 0},
                    "skipped": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Entries already imported before.",
                    },
                },
            },
            "LegacyEntry": {
                "type": "object",
                "additionalProperties": False,
                "required": ["ID", "CreatedAt", "UpdatedAt", "DeletedAt", "Text", "Img"],
                "properties": {
                    "ID": {"type": "integer"},
                    "CreatedAt": {"type": "string", "format": "date-time"},
                    "UpdatedAt": {"type": "string", "format": "date-time"},
                    "DeletedAt": {"type": "null"},
                    "Text": {"type": "string"},
                    "Img": {"type": "string", "description": 'The photo\'s storage key, or "".'},
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "message"],
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(DOCUMENT)
