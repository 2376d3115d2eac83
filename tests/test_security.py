"""Parameters are data, never code or shell; an input folder cannot make the ingest write elsewhere.

(The operator's server binding to 127.0.0.1, and a deployment parameter that looks like
a shell command, are checked end to end in ``test_deployments.py``.)
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
from astropy.io import fits

from blocks import IngestSettings
from ovro_ingest.synth import generate
from tests.conftest import REPO
from tests.fits_cases import scaled_integer_image

PYTHON_CODE = [
    p for folder in ("ovro_ingest", "flows", "tasks", "blocks", "benchmarks") for p in (REPO / folder).rglob("*.py")
]
SHELL_SCRIPTS = [
    REPO / "deployments" / "stand-up",
    REPO / "deployments" / "stop",
    REPO / "scripts" / "make-portal-venv",
]
CLI = str(Path(sys.executable).parent / "ovro-ingest")


def shell_calls(tree: ast.AST) -> list[str]:
    """Calls that hand a string to a shell or to the interpreter."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("os.system", "os.popen", "eval", "exec", "subprocess.getoutput", "subprocess.getstatusoutput"):
            found.append(name)
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{name}(shell=...)")
    return found


def test_no_python_code_hands_a_string_to_a_shell_or_to_eval():
    offenders = {
        str(p.relative_to(REPO)): calls for p in PYTHON_CODE if (calls := shell_calls(ast.parse(p.read_text())))
    }
    assert offenders == {}


def test_the_operator_scripts_pass_values_to_python_as_arguments_or_environment_never_inside_code():
    for script in SHELL_SCRIPTS:
        text = script.read_text()
        assert not re.search(r"^\s*eval\b", text, re.MULTILINE), script
        for code in re.findall(r'-c "(.*?)"', text, re.DOTALL):
            assert "$" not in code, f"{script.name}: shell value spliced into Python code: {code!r}"


def test_a_night_that_is_not_a_date_cannot_point_outside_the_input_root(tmp_path):
    settings = IngestSettings(input_root=str(tmp_path / "nights"), store=str(tmp_path / "s.zarr"))
    for night in ("../../etc", "2024-05-24/../../x", "$(touch /tmp/x)"):
        with pytest.raises(ValueError):
            settings.night_dir(night)


def test_the_block_has_no_plain_credential_field():
    secretish = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)
    plain = [name for name in IngestSettings.model_fields if secretish.search(name)]
    assert plain == [], "credentials belong in Prefect Secret blocks or the environment"


def snapshot(folder: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Path -> (size, mtime) of every file under ``folder`` outside ``skip`` (links not followed)."""
    files = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if Path(root, d) not in skip]
        for name in names:
            if Path(root, name) in skip:
                continue
            stat = Path(root, name).lstat()
            files[str(Path(root, name))] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.mark.usefixtures("prefect_server")
def test_an_input_folder_with_links_outside_makes_the_ingest_write_only_its_store_and_work_folder(tmp_path):
    outside, night = tmp_path / "outside", tmp_path / "night"
    generate(outside / "elsewhere", time_steps=1, n_subbands=2, size=32)
    generate(night, time_steps=2, n_subbands=2, size=32)
    needs_a_fix = outside / "20240524_050029_41MHz_averaged_20000_iterations-I-image.fits"
    scaled_integer_image(needs_a_fix)
    with fits.open(needs_a_fix, mode="update") as hdulist:  # its own time step's time
        hdulist[0].header["DATE-OBS"] = "2024-05-24T05:00:29.300"
    (night / needs_a_fix.name).symlink_to(needs_a_fix)  # a linked file: read, and copied into the work folder
    (night / "linked-folder").symlink_to(outside / "elsewhere", target_is_directory=True)  # not followed
    store = tmp_path / "archive" / "s.zarr"
    secret = "sentinel-credential-4c1f"
    before = snapshot(tmp_path, skip=())
    done = subprocess.run(
        [CLI, "run", str(night), str(store), "--workers", "1", "--chunk-lm", "32"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "AWS_SECRET_ACCESS_KEY": secret},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(xr.open_zarr(store)["time_key"]) == 3
    allowed = (store, Path(f"{store}.work"), Path(f"{store}.lock"))
    after = snapshot(tmp_path, skip=allowed)
    assert {p: v for p, v in after.items() if before.get(p) != v} == {}, "nothing outside the store was written"
    assert list(Path(f"{store}.work", "fixed").glob("*.fits")), "the fixed copy went to the work folder"
    assert secret not in done.stdout + done.stderr
    assert secret not in (store / "zarr.json").read_text()


def test_the_local_dask_cluster_listens_on_no_network_interface():
    import psutil
    from distributed import Client, LocalCluster

    from tasks.dask_cluster import local_cluster_options

    def listening() -> set[tuple[str, int]]:
        connections = psutil.Process().net_connections(kind="inet")
        return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}

    before = listening()
    with LocalCluster(**local_cluster_options(2)) as cluster, Client(cluster) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        opened = listening() - before
        assert cluster.scheduler_address.startswith("inproc://"), "workers reach the scheduler in memory"
    assert opened, "the dashboard listens somewhere (the check below is not vacuous)"
    assert {ip for ip, _ in opened} <= {"127.0.0.1"}, opened
