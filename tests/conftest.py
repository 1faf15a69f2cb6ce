"""Shared test fixtures.

Real data lives outside the project in ../shared/data; tests that need it
skip with a reason when it is absent (a user's fresh clone). CI has it.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("MEDGROUND_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> pathlib.Path:
    """Path under ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data {path} is not present (it lives outside the project)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Counts printed explicitly so a run that collected nothing cannot look green.
    stats = terminalreporter.stats
    counts = {key: len(stats.get(key, [])) for key in ("passed", "failed", "skipped", "error")}
    terminalreporter.write_line(
        "medground test counts: " + ", ".join(f"{k}={v}" for k, v in counts.items())
    )
    if counts["passed"] == 0 and exitstatus == 0:
        terminalreporter.write_line("medground: no test passed — treating the run as a failure")


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and len(reporter.stats.get("passed", [])) == 0 and exitstatus == 0:
        session.exitstatus = 1
