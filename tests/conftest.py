import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CONFORMANCE = REPO.parent / "shared" / "conformance" / "nir-paper"
if not CONFORMANCE.exists():  # CI clones main next to shared/ as well; allow an override
    CONFORMANCE = Path(os.environ.get("NIRDEPLOY_CONFORMANCE", CONFORMANCE))


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    assert CONFORMANCE.exists(), f"conformance files not found at {CONFORMANCE}"
    return CONFORMANCE
