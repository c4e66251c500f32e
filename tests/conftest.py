import os
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The shared conformance files (not in the repository) sit next to the checkout:
# ../shared/conformance/{nir-paper,lava-dl}. Tests find them ONLY through the fixtures below.
# Overrides: NIRDEPLOY_SHARED is the folder holding nir-paper/ and lava-dl/;
# NIRDEPLOY_CONFORMANCE (older) is the nir-paper/ folder itself.
SHARED_DEFAULT = REPO.parent / "shared" / "conformance"


def _locate_shared() -> Path:
    if os.environ.get("NIRDEPLOY_SHARED"):
        return Path(os.environ["NIRDEPLOY_SHARED"])
    if os.environ.get("NIRDEPLOY_CONFORMANCE"):
        return Path(os.environ["NIRDEPLOY_CONFORMANCE"]).parent
    return SHARED_DEFAULT


def _family_dir(root: Path, family: str) -> Path:
    if family == "nir-paper" and os.environ.get("NIRDEPLOY_CONFORMANCE") and not os.environ.get("NIRDEPLOY_SHARED"):
        return Path(os.environ["NIRDEPLOY_CONFORMANCE"])
    return root / family


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared conformance folder (holds ``nir-paper/`` and ``lava-dl/``); a missing one fails the test."""
    root = _locate_shared()
    if not root.is_dir():
        pytest.fail(f"shared conformance files not found at {root} "
                    f"(clone shared/ next to the checkout or set NIRDEPLOY_SHARED)", pytrace=False)
    return root


@pytest.fixture(scope="session")
def conformance_file(shared_dir) -> Callable[..., Path]:
    """``conformance_file(name, family="nir-paper")``: the path of one shared file; a missing one fails."""

    def find(name: str, family: str = "nir-paper") -> Path:
        p = _family_dir(shared_dir, family) / name
        if not p.exists():
            pytest.fail(f"conformance file not found: {p}", pytrace=False)
        return p

    return find


@pytest.fixture(scope="session")
def conformance_dir(shared_dir) -> Path:
    """The NIR paper's conformance folder (``nir-paper/``)."""
    d = _family_dir(shared_dir, "nir-paper")
    if not d.is_dir():
        pytest.fail(f"conformance files not found at {d}", pytrace=False)
    return d
