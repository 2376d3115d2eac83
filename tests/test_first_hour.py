"""What a newcomer meets in the first hour: the real-image tests, a clean clone after the README's commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.orchestration

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


def readme_block(heading: str) -> list[str]:
    """The ``ovro-ingest`` command lines of the first bash block after ``heading`` in the README."""
    text = (REPO / "README.md").read_text()
    block = text[text.index(heading) :].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("ovro-ingest ")]


SMALLER = {"--size": "32", "--subbands": "2", "--time-steps": "2"}
"""The README's synthetic nights, made small enough for a test."""


def shrunk(line: str) -> list[str]:
    words = line.split()[1:]
    return [SMALLER.get(words[i - 1], word) if i else word for i, word in enumerate(words)]


@pytest.mark.slow(30)
@pytest.mark.usefixtures("prefect_server")
def test_following_the_readme_appends_a_later_night_and_leaves_the_clone_clean(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=clone, check=True)
    subprocess.run([*git, "add", ".gitignore"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-qm", "ignore what the tool writes"], cwd=clone, check=True)
    command = str(Path(sys.executable).parent / "ovro-ingest")

    def run(words: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run([command, *words], cwd=clone, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{words}: {result.stdout}{result.stderr}"
        return result

    using_it = readme_block("## Using it")
    runs = {}
    for line in using_it:  # each command the first time it appears; run's variants write nothing else
        words = shrunk(line)
        if words[0] in ("synth", "audit"):
            run(words)
        elif words[0] == "run" and words[1] not in runs and len(words) == 3:
            runs[words[1]] = run([*words, "--workers", "1"])
    assert list(runs) == ["./night", "./night2"]
    assert "2 written" in runs["./night2"].stdout, "the later night appends"
    import xarray as xr

    assert xr.open_zarr(clone / "archive.zarr").sizes["time"] == 4
    for line in readme_block("Check and heal a store"):
        run(line.split()[1:])

    # the same night generated again in another folder: same files, new mtimes
    run(["synth", "night-again", *[w for k, v in SMALLER.items() for w in (k, v)]])
    result = run(["run", "night-again", "archive.zarr", "--workers", "1"])
    assert "2 already stored" in result.stdout and "changed since" not in result.stdout + result.stderr
    shutil.rmtree(clone / "night-again")  # not a README command

    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True, text=True
    )
    assert status.stdout == "", f"untracked after the README's commands:\n{status.stdout}"
