"""Hostile input: schemathesis generates requests from /api/v1/openapi.json."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..servers import ROOT, gunicorn_server
from .conftest import TOKEN

pytestmark = pytest.mark.resilience
# Bounded: a few examples per operation keeps the run well under a minute.
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15")


def test_generated_requests_get_no_5xx_and_answers_match_the_schema(migrated, tmp_path: Path):
    with gunicorn_server(migrated) as base:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{base}/api/v1/openapi.json",
                "--url",
                base,
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "not_a_server_error,status_code_conformance,"
                "content_type_conformance,response_schema_conformance",
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                "7",
                "--request-timeout",
                "20",
                "--generation-deterministic",
            ],
            cwd=ROOT,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 0" not in result.stdout
