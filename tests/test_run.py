"""devswitch run: an unmodified script under the switch, behaving as `python script.py` would.

Each `devswitch run` starts TensorFlow (several seconds), so the runs are shared: conftest's ``switched_runs``
are three runs made once per session (an import-only script, a script under `devswitch run`, a module under
`devswitch run -m`) and the tests here, in test_trust.py and test_timing.py each check one behaviour of them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SCRIPTS, TIMED, clean_environ, result_line
from errorparts import printed

pytestmark = pytest.mark.subprocess


def devswitch(*args: str, cwd, env=None, timeout=240):
    environ = clean_environ(HOME=str(cwd), PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "devswitch", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def runs(switched_runs):
    return switched_runs


def test_script_sees_its_own_argv_name_and_path(runs):
    seen = result_line(runs.script.stdout)
    assert seen["argv"] == [str(TIMED), "--device", "x", "--raise"], "the options after the script are its own"
    assert seen["name"] == "__main__" and seen["path0"] == str(SCRIPTS), "the script runs as __main__ from its folder"
    assert "devswitch: device=cpu (--device)" in runs.script.stderr, "the switch's own --device was applied"


def test_script_exit_code_is_passed_through(runs):
    assert runs.module.returncode == 7, runs.module.stderr


def test_script_exception_prints_as_python_prints_it(runs):
    assert runs.script.returncode == 1, runs.script.stderr
    tail = runs.script.stderr[runs.script.stderr.index("Traceback"):]
    assert tail.splitlines()[1].strip().startswith(f'File "{TIMED}"'), "the first frame is the script's own"
    assert "LookupError: the script's own error" in tail
    assert "_devswitch/launch.py" not in tail and "runpy" not in tail, "devswitch's frames are left out"


def test_run_applies_switch_options_times_the_script_and_writes_the_report(runs):
    from _devswitch.results import read_report

    assert "devswitch: timed Keras calls" in runs.script.stderr
    run = read_report(runs.report)[-1]  # the first run in this report is the imported one
    assert [r.kind for r in run.records] == ["fit", "evaluate", "predict", "predict"]
    assert {r.policy for r in run.records} == {"mixed_bfloat16"}
    assert run.config["precision"] == {"value": "bf16", "source": "explicit", "location": "--precision"}


def test_run_a_module_with_dash_m(runs):
    argv = result_line(runs.module.stdout)["argv"]
    assert argv[0] == str(runs.base / "mymod.py"), "argv[0] is the module's file, as python -m sets it"
    assert argv[1:] == ["a", "--b", "--exit", "7"]


def test_bad_switch_option_and_missing_script_are_clear_errors(tmp_path):
    proc = devswitch("run", "--precision", "fp8", str(SCRIPTS / "argv_script.py"), cwd=tmp_path)
    assert proc.returncode == 2
    printed(proc.stderr, where="--precision", named=["'fp8'"])
    proc = devswitch("run", "missing.py", cwd=tmp_path)
    assert proc.returncode == 2
    printed(proc.stderr, named=["missing.py"])
