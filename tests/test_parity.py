"""The parity runner against the official reference bundle beside the repo."""

import subprocess
import sys

import pytest

from motion_i2v_core import parity
from harness.reference import PARITY

BUNDLE = PARITY


@pytest.fixture(scope="module")
def results():
    lines = []
    return parity.run(BUNDLE, out=lines.append), lines


def test_every_quantity_passes(results):
    res, lines = results
    failed = [r.line() for r in res if not r.passed]
    assert not failed, "\n".join(failed)


def test_covers_module_and_pipeline_quantities(results):
    names = {r.name for r in results[0]}
    expected = {
        "stage1/fwd_eps", "stage1/fwd_ctrl_mid_res", "stage1/fwd_eps_no_control",
        "stage2/fwd_eps (official_compat, Q1)", "stage2/fwd_eps_b1_cond",
        "stage1/control", "stage1/final_latents", "stage1/flow_pre",
        "stage2/final_latents", "stage2/video", "units/ddim_timesteps",
    }
    assert expected <= names, expected - names
    # Every stored ControlNet residual is compared.
    assert sum(n.startswith("stage1/fwd_ctrl_down_res_") for n in names) == 5


def test_a_wrong_number_fails():
    r = parity.compare("x", parity.torch.ones(3), parity.torch.ones(3) * 1.01, "forward")
    assert not r.passed and "FAIL" in r.line()
    r = parity.compare("x", parity.torch.ones(3), parity.torch.ones(4), "forward")
    assert not r.passed and "shape" in r.line()


def test_cli_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "motion_i2v_core", "parity", str(BUNDLE), "--level", "pipeline", "--only", "units/"],
        capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  units/ddim_timesteps" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "motion_i2v_core", "parity", str(tmp_path)], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "not a parity bundle" in (bad.stdout + bad.stderr)
