"""The bad-input tier: over 1,000 generated inputs, each refused cleanly.

For each family (recipes, arguments, zips, files, environment) every case
runs through the real entry point (``harness``) and must end with: no
traceback, no hang, no partial output, the documented exit code, one
``error:`` line with its ``hint:``, no request to the (recording) AWS
endpoint, and, for recipes, refusal at load. The counts of each family are
printed at the end of the run (``conftest.py``) and asserted here.

The valid base runs too, and must *not* be refused as bad input: a harness
or workspace mistake would otherwise make every case "pass".
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from . import cases as corpus
from .harness import Case, run_all

pytestmark = pytest.mark.corpus
# What the endpoint says: AWS's own text must reach the user as written (brackets, emoji codes, escapes).
MESSAGE = "recorded [/] by the [bold]corpus[/] endpoint :x: \x1b[31m"
FLOORS = {"recipes": 400, "arguments": 300, "zips": 100, "files": 150, "environment": 80}
SUMMARY: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint():
    """An AWS endpoint on 127.0.0.1 that records every request and answers each with 403."""
    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def _record(self):
            seen.append(f"{self.command} {self.path}")
            body = json.dumps({"message": MESSAGE}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", "AccessDeniedException")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _record

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.fixture(scope="module")
def environment(tmp_path_factory, endpoint):
    home = tmp_path_factory.mktemp("corpus-home")
    return {
        "PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", "COLUMNS": "200", "NO_COLOR": "1",
        "LAYERS_CACHE_DIR": str(home / "cache"),
        # Nothing a case starts can reach a network: a build that got past its checks fails at resolve (exit 3).
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
        "PIP_CONFIG_FILE": os.devnull, "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint[0], "LAYERS_AWS_MAX_ATTEMPTS": "1", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
    }


def _run(family: str, cases: list[Case], tmp_path: Path, environment, endpoint):
    outcomes = run_all(cases, tmp_path, environment, requests=endpoint[1])
    problems = Counter(p for o in outcomes for p in o.problems)
    SUMMARY[family] = {"cases": len(outcomes), "refused cleanly": sum(not o.problems for o in outcomes),
                       **{kind: problems.get(kind, 0) for kind in (
                           "traceback", "hang", "partial-output", "accepted-when-invalid", "wrong-exit", "message",
                           "request-sent", "missing-output")},
                       "slowest_s": round(max(o.seconds for o in outcomes), 2)}
    bad = [o for o in outcomes if o.problems]
    shown = "\n".join(f"{o.case.id}: {','.join(o.problems)} exit={o.code} argv={o.case.argv!r}\n    "
                      + (o.stderr.strip().replace("\n", "\n    ")[-600:] or o.stdout.strip()[-300:])
                      for o in bad[:40])
    assert not bad, f"{len(bad)} of {len(outcomes)} {family} cases went wrong:\n{shown}"
    assert len(outcomes) >= FLOORS[family]


@pytest.mark.parametrize("family", sorted(FLOORS))
def test_corpus(family, tmp_path, environment, endpoint):
    generate = {"recipes": corpus.recipe_cases, "arguments": corpus.argument_cases, "zips": corpus.zip_cases,
                "files": corpus.file_cases, "environment": corpus.environment_cases}[family]
    _run(family, generate(), tmp_path, environment, endpoint)


def test_the_valid_base_is_not_refused_as_bad_input(tmp_path, environment, endpoint):
    """Each base command gets past its checks: to the dead index (3), the AWS endpoint (7), or done (0)."""
    files = corpus.workspace()
    base = [
        Case("base-recipes", "base", ("recipes",), files, expect=0, stdout_has="demo"),
        Case("base-build", "base", corpus.RECIPE_COMMANDS["build"], files, expect=3),
        Case("base-lock", "base", ("lock", "demo"), files, expect=3),
        Case("base-plan", "base", ("plan", "--layer", "demo"), files, expect=0),
        Case("base-schedule", "base", corpus.RECIPE_COMMANDS["schedule"], files, expect=0),
        Case("base-report", "base", ("report", "good.zip"), files, expect=0),
        Case("base-diff", "base", ("diff", "good.zip", "other.zip"), files, expect=0),
        Case("base-check", "base", ("check", "good.zip", "--runtime", "python3.11"), files, expect=0),
        Case("base-arns", "base", ("arns", "demo"), files, expect=0, stdout_has="arn:aws:lambda:us-east-1"),
        Case("base-init", "base", ("init", "new", "-r", "requirements.txt", "--guess"), files, expect=0),
        Case("base-lock-build", "base", ("build", "demo", "--backend", "pip", "--lock", "lock.json"), files, expect=3),
        Case("base-publish", "base", ("publish", "good.zip", "--regions", "us-east-1", "--dry-run"), files,
             expect=7, aws=True),
        Case("base-prune", "base", ("prune", "demo", "--dry-run"), files, expect=7, aws=True),
    ]
    outcomes = run_all(base, tmp_path, environment, requests=endpoint[1])
    wrong = {o.case.id: (o.code, o.stderr[-400:]) for o in outcomes
             if o.code != o.case.expect or "traceback" in o.problems or "missing-output" in o.problems}
    assert not wrong
    # The AWS ones did reach the endpoint: the corpus's "no request" is measured, not assumed.
    assert all(o.requests > 0 for o in outcomes if o.case.aws)
    # And what AWS said came through as text, escapes shown, nothing taken as markup or emoji.
    prune = next(o for o in outcomes if o.case.id == "base-prune")
    assert "recorded [/] by the [bold]corpus[/] endpoint :x: \\x1b[31m" in prune.stderr, prune.stderr
    assert sum(len(generate()) for generate in (corpus.recipe_cases, corpus.argument_cases, corpus.zip_cases,
                                                corpus.file_cases, corpus.environment_cases)) >= 1000
