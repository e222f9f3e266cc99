"""Where the workspace's third-party data is: the one place every test takes the path from.

BALANCEDBIO_DATA names the folder; by default it is ../shared/data next to the repository (see
../shared/data/README.md). tests/conftest.py fails the run when the folder is missing, unless
BALANCEDBIO_ALLOW_MISSING_DATA=1 says that skipping the tests that read it is wanted.
(tests/ is on sys.path because tests/conftest.py lives there, so this imports as `shared_data`.)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BALANCEDBIO_DATA") or REPO.parent / "shared" / "data")
ALLOW_MISSING_DATA = os.environ.get("BALANCEDBIO_ALLOW_MISSING_DATA") == "1"


def missing_data_message() -> str | None:
    """One line saying where the data is expected, or None when it is there."""
    if SHARED_DATA.is_dir():
        return None
    return (f"the shared data folder is not at {SHARED_DATA}: set BALANCEDBIO_DATA to it (see ../shared/data/README.md), "
            "or set BALANCEDBIO_ALLOW_MISSING_DATA=1 to skip the tests that read it")


def require(path: Path) -> Path:
    """`path` inside the shared data: fails when the folder is there without it, skips only when the
    run opted out of the data (the folder is absent and BALANCEDBIO_ALLOW_MISSING_DATA=1)."""
    import pytest

    if path.exists():
        return path
    if SHARED_DATA.is_dir():
        pytest.fail(f"{path} is not in the shared data folder {SHARED_DATA} (see its README.md)")
    pytest.skip(missing_data_message())
