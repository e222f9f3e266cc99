"""The system programs the end-to-end tests run, found in one place.

`make test` on a machine without them skips only the tests that need them, each saying in one line
what to install; under CI (CI=true, as .ci/run runs, after installing them) a missing program is a
failure, never a skip. (Imports as `system_programs`: tests/ is on sys.path, see shared_data.py.)
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

# name -> (Debian package, how to find it)
PACKAGES = {"chromium": "chromium", "prometheus": "prometheus", "promtool": "prometheus",
            "pg_ctl": "postgresql", "initdb": "postgresql", "postgres": "postgresql"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find(name: str) -> Path | None:
    """The program's path: on PATH, or (PostgreSQL's server programs) in Debian's versioned folder."""
    if name == "chromium" and os.environ.get("BALANCEDBIO_CHROMIUM"):
        path = Path(os.environ["BALANCEDBIO_CHROMIUM"])
        return path if path.exists() else None
    found = shutil.which(name)
    if found:
        return Path(found)
    if PACKAGES.get(name) == "postgresql":  # Debian keeps them off PATH, in /usr/lib/postgresql/<version>/bin
        versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
        return Path(versions[-1]) if versions else None
    return None


def missing() -> list[str]:
    """Debian packages to install for every end-to-end test to run here."""
    return sorted({PACKAGES[name] for name in PACKAGES if find(name) is None})


def require(name: str) -> Path:
    """The program's path; else skip the test (fail it under CI) saying what to install."""
    import pytest

    path = find(name)
    if path is not None:
        return path
    message = f"{name} is missing: `apt-get install -y {PACKAGES[name]}` (.ci/run installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
