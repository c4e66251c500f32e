"""The sweep report opened in headless Chromium: it renders, at the expected size, with its figures.

Chromium is a Debian package (``apt-get install chromium``); `.ci/run` installs it. Without it
this test fails (the report's rendering is part of what CI checks).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed for the report screenshot: apt-get install chromium (.ci/run does)"
    return exe


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL
    from toolchain.reports.report import build_report

    d = tmp_path_factory.mktemp("shot")
    api.export_checkpoint(DEMO_MODEL, str(DEMO_CHECKPOINT), output=str(d / "model.nir"))
    api.sweep(str(d / "model.nir"), "default", [2.5e-4, 5e-4, 1e-3, 2e-3], ["tau", "integral", "exact"],
              output=str(d / "sweep"), samples=40, workers=1, progress=False)  # fmt: skip
    return build_report(str(d / "sweep"), str(d / "report.html")), d


def test_sweep_report_screenshot(sweep_report):
    from PIL import Image

    result, d = sweep_report
    shot = d / "shot.png"
    r = subprocess.run(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,2600", (d / "report.html").as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ERR_" not in r.stderr, r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert img.shape == (2600, 1200, 3)
    # the page is not blank: the top (title, recommendation table) and the figures below have ink
    top, body = img[:400], img[400:]
    assert (top < 200).any(axis=2).mean() > 0.01
    assert img.std() > 20
    # the figures are embedded and decoded (a broken image would leave the page nearly text only)
    colour = (np.abs(body[..., 0] - body[..., 2]) > 60).mean()  # method colours (blue, orange, red)
    assert colour > 0.002, colour
    html = (d / "report.html").read_text()
    for name in ("img-front", "img-sweep_accuracy", "img-sweep_energy"):
        assert name in html
