"""Schemathesis against the running service's OpenAPI schema: no input may produce a server error.

Covers the API operations this service defines (OpenAI-compatible, consult, feedback, probes);
the mounted Gradio UI's internal routes are Gradio's own and are left out.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

INCLUDE = r"^/(v1/.*|consult|consult_stream|feedback|livez|readyz|healthz)$"


def test_no_server_errors(server, tmp_path):
    report = tmp_path / "schemathesis.json"
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "run", server.url + "/docs.json",
           "--checks", "not_a_server_error", "--include-path-regex", INCLUDE,
           "-H", f"Authorization: Bearer {server.key}", "--max-examples", "15", "--seed", "1",
           "--request-timeout", "120", "--max-time", "150", "--workers", "1", "--no-shrink",
           "--phases", "examples,coverage,fuzzing", "--warnings", "off"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=420)
    output = run.stdout + run.stderr
    print(output[-3000:])  # the summary: operations, test cases, failures
    assert run.returncode == 0, output[-6000:] + "\n--- server log ---\n" + server.log()
    assert re.search(r"\b\d+ passed\b|No issues found", output), output[-3000:]
