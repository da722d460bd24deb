"""devswitch run: an unmodified script under the switch, behaving as `python script.py` would.

Each `devswitch run` starts TensorFlow (several seconds), so the runs are shared: ``switched`` makes three
runs once per session (an import-only script, a script under `devswitch run`, a module under
`devswitch run -m`) and the tests here and in test_trust.py each check one behaviour of them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import SCRIPTS, Child, children, clean_environ, result_line

pytestmark = pytest.mark.subprocess
TIMED = SCRIPTS / "timed_script.py"  # four timed Keras calls, then --raise / --exit N as asked


def devswitch(*args: str, cwd, env=None, timeout=240):
    environ = clean_environ(HOME=str(cwd), PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "devswitch", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def _switched(base):
    """Three runs of TIMED in ``base`` (their cwd and HOME), made once per session (for test_run.py and
    test_trust.py, whichever asks first).

    ``imported``: ``python timed_script.py`` with DEVSWITCH_PRECISION=fp32 and DEVSWITCH_REPORT=report;
    ``script``: ``devswitch run --device cpu --precision bf16 --report report timed_script.py --device x --raise``
    (after ``imported``: the second run in the same report; the script's own --device, and its own error);
    ``module``: ``devswitch run --device cpu --report wrong.json -m mymod a --b --exit 7`` in the folder holding
    mymod.py (a copy of TIMED) and a wrong.json that is not a report (``[]``): it shares no file with the others.
    """
    report, wrong = base / "report.json", base / "wrong.json"

    def module_files(_):
        wrong.write_text("[]\n")
        shutil.copy(TIMED, base / "mymod.py")

    home = {"HOME": str(base)}
    return {
        "imported": Child([TIMED], {**home, "DEVSWITCH_REPORT": str(report), "DEVSWITCH_PRECISION": "fp32",
                                    "DEVSWITCH_DEVICE": "cpu"}, cwd=base, timeout=240),
        "module": Child(["-m", "devswitch", "run", "--device", "cpu", "--report", wrong, "-m", "mymod", "a", "--b",
                         "--exit", "7"], home, prepare=module_files, cwd=base, timeout=240),
        "script": Child(["-m", "devswitch", "run", "--device", "cpu", "--precision", "bf16", "--report", report, TIMED,
                         "--device", "x", "--raise"], home, after="imported", cwd=base, timeout=240),
    }


switched = children(_switched, scope="session")


@pytest.fixture
def runs(switched) -> SimpleNamespace:
    base = switched.root
    return SimpleNamespace(base=base, report=base / "report.json", wrong=base / "wrong.json",
                           imported=switched("imported")[0], script=switched("script")[0],
                           module=switched("module")[0])


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
    assert "devswitch/launch.py" not in tail and "runpy" not in tail, "devswitch's frames are left out"


def test_run_applies_switch_options_times_the_script_and_writes_the_report(runs):
    from devswitch.results import read_report

    assert "devswitch: timed Keras calls" in runs.script.stderr
    run = read_report(runs.report)[-1]  # the first run in this report is the imported one
    assert [r["kind"] for r in run["records"]] == ["fit", "evaluate", "predict", "predict"]
    assert {r["policy"] for r in run["records"]} == {"mixed_bfloat16"}
    assert run["config"]["precision"] == {"value": "bf16", "source": "explicit", "location": "--precision"}


def test_run_a_module_with_dash_m(runs):
    argv = result_line(runs.module.stdout)["argv"]
    assert argv[0] == str(runs.base / "mymod.py"), "argv[0] is the module's file, as python -m sets it"
    assert argv[1:] == ["a", "--b", "--exit", "7"]


def test_bad_switch_option_and_missing_script_are_clear_errors(tmp_path):
    proc = devswitch("run", "--precision", "fp8", str(SCRIPTS / "argv_script.py"), cwd=tmp_path)
    assert proc.returncode == 2 and "--precision: invalid value 'fp8'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = devswitch("run", "missing.py", cwd=tmp_path)
    assert proc.returncode == 2 and "no such script: missing.py" in proc.stderr
