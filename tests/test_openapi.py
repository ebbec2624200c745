"""The OpenAPI document is valid and real responses match it."""

from __future__ import annotations

import io
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .conftest import image_bytes

DOC_URI = "urn:diary:openapi"


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def operation_for(document: dict, method: str, path: str) -> dict:
    for template, item in document["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template) + "$"
        if re.match(pattern, path) and method in item:
            return item[method]
    raise AssertionError(f"{method.upper()} {path} is not in the document")


def assert_matches_document(document: dict, method: str, path: str, response) -> None:
    """The status is documented and the body validates against its schema."""
    operation = operation_for(document, method, path.split("?")[0])
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{response.status_code} is not documented for {method.upper()} {path}"
    if "$ref" in documented:
        documented = document["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    if "content" not in documented:
        assert not response.data
        return
    assert response.mimetype in documented["content"], response.mimetype
    schema = documented["content"][response.mimetype]["schema"]
    registry = Registry().with_resource(
        DOC_URI, Resource(contents=document, specification=DRAFT202012)
    )
    if "$ref" in schema:
        schema = {"$ref": DOC_URI + schema["$ref"]}
    else:
        schema = {**schema, "$id": DOC_URI + "#/inline"}
        schema = _absolute_refs(schema)
    Draft202012Validator(schema, registry=registry).validate(response.get_json())


def _absolute_refs(node):
    if isinstance(node, dict):
        return {
            k: (DOC_URI + v if k == "$ref" and v.startswith("#") else _absolute_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute_refs(v) for v in node]
    return node


def test_real_responses_match_the_document(client, auth, document):
    calls = []

    def call(method: str, path: str, **kwargs):
        response = getattr(client, method)(path, **kwargs)
        calls.append((method, path, response))
        return response

    created = call("post", "/api/v1/entries", json={"text": "hello"}, headers=auth).get_json()
    call(
        "post",
        "/api/v1/entries",
        data={"text": "photo", "file": (io.BytesIO(image_bytes()), "a.jpg")},
        headers=auth,
    )
    call("get", "/api/v1/entries?limit=1", headers=auth)
    call("get", f"/api/v1/entries/{created['id']}", headers=auth)
    call("patch", f"/api/v1/entries/{created['id']}", json={"text": "changed"}, headers=auth)
    call("get", "/api/v1/entries/99999", headers=auth)
    call("get", "/api/v1/entries?limit=0", headers=auth)
    call("get", "/api/v1/entries")
    call(
        "post",
        "/",
        data={"text": "legacy", "file": (io.BytesIO(image_bytes()), "b.jpg")},
        headers=auth,
    )
    call("get", "/", headers=auth)
    call("post", "/api/v1/entries", json={"text": ""}, headers=auth)
    call("delete", f"/api/v1/entries/{created['id']}", headers=auth)

    for method, path, response in calls:
        assert_matches_document(document, method, path, response)
