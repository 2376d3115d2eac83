"""What a newcomer meets in the first hour: the real-image tests, a clean clone after the README's commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USES_REAL_IMAGE = """
from astropy.io import fits

def test_reads_it(real_image):
    assert fits.getheader(real_image)["NAXIS"] >= 2
"""


def run_pytest_with_our_conftest(tmp_path: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a one-test suite that uses the ``real_image`` fixture, in a clone-like folder with no shared data beside it."""
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "test_uses_real_image.py").write_text(USES_REAL_IMAGE)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        cwd=tests.parent,
        env=environment,
        timeout=300,
    )


def test_without_a_real_image_the_skip_message_says_how_to_run_those_tests(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "OVRO_INGEST_REAL_IMAGE"}
    result = run_pytest_with_our_conftest(tmp_path, environment)
    assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout + result.stderr
    assert "OVRO_INGEST_REAL_IMAGE=" in result.stdout and "-I-image.fits" in result.stdout, result.stdout


def test_the_real_image_tests_use_the_file_named_by_ovro_ingest_real_image(tmp_path):
    from ovro_ingest.synth import generate

    image = generate(tmp_path / "elsewhere", time_steps=1, n_subbands=1, size=32)[0]
    result = run_pytest_with_our_conftest(tmp_path, {**os.environ, "OVRO_INGEST_REAL_IMAGE": str(image)})
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr
