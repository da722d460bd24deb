"""devswitch run: an unmodified script under the switch, behaving as `python script.py` would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import SCRIPTS, clean_environ, result_line

pytestmark = pytest.mark.subprocess


def devswitch(*args: str, cwd, env=None, timeout=240):
    environ = clean_environ(HOME=str(cwd), PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "devswitch", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def test_script_sees_its_own_argv_name_and_exit_code(tmp_path):
    script = SCRIPTS / "argv_script.py"
    proc = devswitch("run", "--device", "cpu", str(script), "--device", "x", "--exit", "7", cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    seen = result_line(proc.stdout)
    assert seen["argv"] == [str(script), "--device", "x", "--exit", "7"]  # its options are its own
    assert seen["name"] == "__main__" and seen["path0"] == str(SCRIPTS)
    assert "devswitch: device=cpu (--device)" in proc.stderr


def test_script_exception_prints_as_python_prints_it(tmp_path):
    proc = devswitch("run", str(SCRIPTS / "argv_script.py"), "--raise", cwd=tmp_path)
    assert proc.returncode == 1
    tail = proc.stderr[proc.stderr.index("Traceback"):]
    assert tail.splitlines()[1].strip().startswith(f'File "{SCRIPTS / "argv_script.py"}"')
    assert "LookupError: the script's own error" in tail
    assert "devswitch/launch.py" not in tail and "runpy" not in tail


def test_run_applies_switch_options_times_the_script_and_writes_the_report(tmp_path):
    report = tmp_path / "report.json"
    proc = devswitch("run", "--precision", "bf16", "--report", str(report), str(SCRIPTS / "timed_script.py"),
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "devswitch: timed Keras calls" in proc.stderr
    doc = json.loads(report.read_text())
    assert [r["kind"] for r in doc["records"]] == ["fit", "evaluate", "predict", "predict"]
    assert {r["policy"] for r in doc["records"]} == {"mixed_bfloat16"}
    assert doc["config"]["precision"] == {"value": "bf16", "source": "explicit", "location": "--precision"}


def test_bad_switch_option_and_missing_script_are_clear_errors(tmp_path):
    proc = devswitch("run", "--precision", "fp8", str(SCRIPTS / "argv_script.py"), cwd=tmp_path)
    assert proc.returncode == 2 and "--precision: invalid value 'fp8'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = devswitch("run", "missing.py", cwd=tmp_path)
    assert proc.returncode == 2 and "no such script: missing.py" in proc.stderr


def test_run_a_module_with_dash_m(tmp_path):
    (tmp_path / "mymod.py").write_text("import sys\nprint('RESULT', '{\"argv\": %s}' % __import__('json')"
                                       ".dumps(sys.argv))\n")
    proc = devswitch("run", "--report", "off", "-m", "mymod", "a", "--b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = result_line(proc.stdout)["argv"]
    assert argv[0] == str(tmp_path / "mymod.py") and argv[1:] == ["a", "--b"]  # as python -m sets it
