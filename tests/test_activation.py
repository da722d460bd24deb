"""Activation at the first import of Keras: ``import devswitch`` resolves, validates and sets what a framework
reads when it starts, and imports no framework; the rest is applied when the script imports Keras, so a
``KERAS_BACKEND`` the script sets in code is seen (a backend given to devswitch wins, and the summary says so).
The internals import without side effects, ``devswitch run python train.py`` is ``devswitch run train.py``,
and another interpreter is refused."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPTS, Child, children, clean_environ, result_line
from errorparts import parts, printed

OWN_BACKEND = SCRIPTS / "own_backend.py"
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(OWN_BACKEND.read_text().splitlines(), 1) if text in line)


def _python(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = clean_environ(HOME=str(cwd), PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=120)


def _own_backend_runs(root: Path) -> dict[str, Child]:
    script = str(OWN_BACKEND)
    return {
        "import first": Child([script, "--import-devswitch"]),
        "run python": Child(["-m", "devswitch", "run", "--log-level", "error", "python", script, "--import-devswitch"]),
        "given torch": Child([script, "--import-devswitch"], {"DEVSWITCH_BACKEND": "torch"}),
        "run": Child(["-m", "devswitch", "run", script]),
    }


own_backend_runs = children(_own_backend_runs)


def _summaries(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("devswitch: device=")]


@pytest.mark.subprocess
@pytest.mark.parametrize("name", ["import first", "run"])
def test_a_script_that_sets_keras_backend_in_code_runs_on_it(own_backend_runs, name):
    """With ``import devswitch`` first and under ``devswitch run``, the script's own KERAS_BACKEND=jax is the
    backend (no backend given to devswitch), the summary names it with the line that set it, and the
    script's own TF_CPP_MIN_LOG_LEVEL stands; nothing was imported before the script's ``import keras``."""
    proc, _ = own_backend_runs(name)
    assert proc.returncode == 0, proc.stderr
    seen = result_line(proc.stdout)
    assert (seen["backend"], seen["plan_backend"]) == ("jax", "jax")
    assert seen["tensor"].startswith("jax"), "the tensor is a JAX array"
    assert seen["loaded_before_keras"] == [], "import devswitch imports no framework"
    assert seen["tf_cpp_min_log_level"] == "0", "the script's own variable stands: no setting given to devswitch"
    [summary] = _summaries(proc.stderr)
    assert summary.endswith(f"backend=jax (KERAS_BACKEND set by own_backend.py:{_line_of('KERAS_BACKEND')})")


@pytest.mark.subprocess
def test_a_backend_given_to_devswitch_wins_over_the_scripts_and_says_so(own_backend_runs):
    """DEVSWITCH_BACKEND=torch wins over the script's KERAS_BACKEND=jax; the summary says over what."""
    proc, _ = own_backend_runs("given torch")
    assert proc.returncode == 0, proc.stderr
    seen = result_line(proc.stdout)
    assert (seen["backend"], seen["plan_backend"], seen["tensor"]) == ("torch", "torch", "torch")
    assert "tensorflow" not in seen["loaded_before_keras"]
    [summary] = _summaries(proc.stderr)
    line = _line_of("KERAS_BACKEND")
    assert summary.endswith(f"backend=torch (DEVSWITCH_BACKEND) over KERAS_BACKEND=jax set by own_backend.py:{line}")


@pytest.mark.subprocess
def test_run_python_script_runs_the_script_switched_once_with_a_given_variable_winning(own_backend_runs):
    """``devswitch run python SCRIPT`` runs the script (its own ``import devswitch`` inert: one summary); the
    --log-level given to devswitch wins over the script's TF_CPP_MIN_LOG_LEVEL, with a warning naming both."""
    proc, _ = own_backend_runs("run python")
    assert proc.returncode == 0, proc.stderr
    seen = result_line(proc.stdout)
    assert seen["backend"] == "jax" and seen["tf_cpp_min_log_level"] == "2"
    assert len(_summaries(proc.stderr)) == 1, "activated exactly once"
    line = _line_of("TF_CPP_MIN_LOG_LEVEL")
    over = f"TF_CPP_MIN_LOG_LEVEL=2 (from devswitch's settings) over TF_CPP_MIN_LOG_LEVEL=0 set by " \
        f"own_backend.py:{line}"
    assert over in proc.stderr


# Every module imports quietly; a module that cannot would be named here and tested on its own below.
KERAS_AT_IMPORT: tuple[str, ...] = ()

_IMPORT_ALL = """
import contextlib, importlib, io, json, os, pkgutil, sys
import _devswitch
only = sys.argv[1:]
names = only or sorted(m.name for m in pkgutil.walk_packages(_devswitch.__path__, "_devswitch.")
                       if not m.name.endswith("__main__") and m.name not in SKIPPED)
out, err, environ, finders = io.StringIO(), io.StringIO(), dict(os.environ), list(sys.meta_path)
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    for name in names:
        importlib.import_module(name)
print(json.dumps({"modules": names, "frameworks": sorted(m for m in FRAMEWORKS if m in sys.modules),
                  "printed": out.getvalue() + err.getvalue(), "environ_changed": dict(os.environ) != environ,
                  "hooks_added": len(sys.meta_path) - len(finders)}))
""".replace("SKIPPED", repr(KERAS_AT_IMPORT)).replace("FRAMEWORKS", repr(FRAMEWORKS))


@pytest.mark.subprocess
def test_every_internal_module_imports_without_a_side_effect(tmp_path):
    """Importing every module of _devswitch starts no framework, prints nothing, changes no environment
    variable and installs no import hook (and the interpreter prints nothing either)."""
    proc = _python("-c", _IMPORT_ALL, cwd=tmp_path, env={"DEVSWITCH_BACKEND": "jax"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    seen = json.loads(proc.stdout)
    assert len(seen["modules"]) > 40 and "_devswitch.session" in seen["modules"]
    assert seen["frameworks"] == [] and seen["printed"] == ""
    assert not seen["environ_changed"] and seen["hooks_added"] == 0


@pytest.mark.subprocess
def test_the_timing_module_defines_its_keras_callbacks_at_first_use(tmp_path):
    """_devswitch.timing imports no Keras; TimingCallback is made when first asked for, a keras Callback."""
    code = ("import sys, _devswitch.timing as t\nbefore = 'keras' in sys.modules\n"
            "import keras\nc = t.TimingCallback(sink=None)\n"
            "print(before, isinstance(c, keras.callbacks.Callback), isinstance(t.BatchTimingCallback(sink=None), "
            "t.TimingCallback), t.TimingCallback is t.TimingCallback)")
    proc = _python("-c", code, cwd=tmp_path, env={"KERAS_BACKEND": "jax"})
    assert proc.returncode == 0 and proc.stdout.split() == ["False", "True", "True", "True"], proc.stderr


_IMPORT_FACE = """
import json, os, sys
import devswitch
from _devswitch import hook, state
def seen():
    return {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND"), "pending": state.current().pending is not None,
            "hook": any(isinstance(f, hook.KerasFinder) for f in sys.meta_path)}
first = {"frameworks": sorted(m for m in FRAMEWORKS if m in sys.modules), **seen()}
devswitch.reset()
print(json.dumps({"first": first, "after_reset": seen()}))
""".replace("FRAMEWORKS", repr(FRAMEWORKS))


@pytest.mark.subprocess
@pytest.mark.parametrize("given, keras_backend", [
    pytest.param({"DEVSWITCH_BACKEND": "jax"}, "jax", id="a backend given to devswitch is set at import"),
    pytest.param({}, None, id="Keras' own choice is left to the script until it imports Keras"),
])
def test_import_devswitch_starts_no_framework_and_reset_undoes_what_it_began(tmp_path, given, keras_backend):
    """``import devswitch`` imports no framework: it sets what was given to it and waits for Keras (a hook);
    reset() takes the hook and the variables back."""
    proc = _python("-c", _IMPORT_FACE, cwd=tmp_path, env=given)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["first"] == {"frameworks": [], "KERAS_BACKEND": keras_backend, "hook": True, "pending": True}
    assert seen["after_reset"] == {"KERAS_BACKEND": None, "hook": False, "pending": False}


@pytest.mark.subprocess
def test_a_bad_devswitchrc_is_still_reported_at_import(tmp_path):
    """The configuration is validated at ``import devswitch``: a bad file ends the script there (exit 2, the
    file:line and the value), before the script's next line and without a traceback."""
    (tmp_path / ".devswitchrc").write_text("precision: fp9\n")
    proc = _python("-c", "import devswitch\nprint('the next line ran')", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    printed(proc.stderr, where=f"{tmp_path / '.devswitchrc'}:1:12", named=["'fp9'"])
    proc = _python("-m", "devswitch", "info", cwd=tmp_path)  # python -m devswitch info shows it the same way
    assert proc.returncode == 2 and "'fp9'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.subprocess
def test_python_m_devswitch_runs_its_command_over_a_bad_devswitchrc(tmp_path):
    """``python -m devswitch`` is the ``devswitch`` command even with a bad ``.devswitchrc`` in the folder:
    importing the package to locate the command does not activate the switch, so ``init --help`` and
    ``init --force`` (the command that fixes the file) run, and ``info`` reports the bad file itself, as the
    console script does. A script, or a module run with ``-m``, that imports devswitch still stops at once."""
    bad = "precision: fp9\n"
    (tmp_path / ".devswitchrc").write_text(bad)
    console = subprocess.run([str(Path(sys.executable).with_name("devswitch")), "info"], cwd=tmp_path,
                             env=clean_environ(HOME=str(tmp_path)), capture_output=True, text=True, timeout=120)
    info = _python("-m", "devswitch", "info", cwd=tmp_path)
    assert console.returncode == info.returncode == 2 and info.stderr == console.stderr
    printed(info.stderr, where=f"{tmp_path / '.devswitchrc'}:1:12", named=["'fp9'"])
    helped = _python("-m", "devswitch", "init", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "usage: devswitch init" in helped.stdout, helped.stderr
    fixed = _python("-m", "devswitch", "init", "--force", cwd=tmp_path)
    assert fixed.returncode == 0 and (tmp_path / ".devswitchrc").read_text() != bad, fixed.stderr
    assert _python("-m", "devswitch", "info", cwd=tmp_path).returncode == 0
    (tmp_path / ".devswitchrc").write_text(bad)
    (tmp_path / "mymod.py").write_text("import devswitch\nprint('the next line ran')\n")
    for args in (["mymod.py"], ["-m", "mymod"]):
        proc = _python(*args, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "" and "'fp9'" in proc.stderr, args


@pytest.mark.parametrize(("argv", "orig_argv", "locating"), [
    pytest.param(["-m"], ["python", "-m", "devswitch", "info"], True, id="python -m devswitch"),
    pytest.param(["-m"], ["python", "-X", "dev", "-mdevswitch"], True, id="python -X dev -mdevswitch"),
    pytest.param(["-m"], ["python", "-m", "mypkg.train"], False, id="a package of the user's run with -m"),
    pytest.param(["/x/devswitch/__main__.py"], ["python", "-m", "devswitch"], False, id="located: argv[0] is a path"),
    pytest.param(["train.py"], ["python", "train.py", "-m", "devswitch"], False, id="a script"),
])
def test_locating_the_command_is_only_python_m_devswitch(argv, orig_argv, locating):
    """Only the import that locates ``python -m devswitch`` (argv[0] "-m", the module named in orig_argv)
    skips the activation."""
    from _devswitch.session import locating_the_command

    assert locating_the_command(argv, orig_argv) is locating


@pytest.mark.subprocess
@pytest.mark.parametrize("interpreter", ["/usr/bin/python2", "python2.7", "other-venv/bin/python"])
def test_run_refuses_another_interpreter(tmp_path, interpreter):
    """``devswitch run OTHER_PYTHON script.py`` is refused (exit 2, naming both interpreters): devswitch runs the
    script inside its own interpreter. Nothing is run."""
    (tmp_path / "x.py").write_text("print('ran')\n")
    if interpreter.startswith("other-venv"):
        (tmp_path / "other-venv" / "bin").mkdir(parents=True)
        (tmp_path / "other-venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
        (tmp_path / interpreter).symlink_to(Path(sys.executable).resolve())  # the same binary, another environment
    proc = _python("-m", "devswitch", "run", interpreter, "x.py", cwd=tmp_path)
    assert proc.returncode == 2 and "ran" not in proc.stdout
    printed(proc.stderr, named=[interpreter, sys.executable])  # the interpreter given, the one devswitch runs in


@pytest.mark.parametrize("target, rest, expected", [
    pytest.param("python", ["train.py", "--epochs", "3"], ("train.py", ["--epochs", "3"], False), id="python SCRIPT"),
    pytest.param("python3", ["-m", "pkg.mod", "a"], ("pkg.mod", ["a"], True), id="python3 -m MODULE"),
    pytest.param(sys.executable, ["train.py"], ("train.py", [], False), id="this interpreter's path"),
    pytest.param("train.py", ["python"], ("train.py", ["python"], False), id="a script named otherwise"),
    pytest.param("python_tools.py", [], ("python_tools.py", [], False), id="a script whose name starts with python"),
])
def test_run_takes_the_interpreter_word_as_uv_run_does(target, rest, expected):
    """``devswitch run python train.py`` (the form of uv/poetry/hatch run) is ``devswitch run train.py``."""
    from _devswitch.cli.run import unwrap_python

    assert unwrap_python(target, rest, False) == expected


def test_run_python_without_a_script_is_a_clear_error():
    from _devswitch.cli.run import unwrap_python
    from _devswitch.errors import UsageError

    with pytest.raises(UsageError) as info:
        unwrap_python("python", ["-u", "train.py"], False)
    parts(info, UsageError, named=["-m MODULE", "python", "'-u'"])


def test_where_a_script_set_a_variable_is_its_one_line_or_its_file(tmp_path):
    """The line that set a variable is named only when one line of the script sets it; else the file."""
    from _devswitch.hook import describe_setter, where_set

    one = tmp_path / "train.py"
    one.write_text('import os\n# os.environ["KERAS_BACKEND"] = "torch"\nos.environ["KERAS_BACKEND"] = "jax"\n'
                   'print(os.environ["KERAS_BACKEND"] == "jax")\n')
    two = tmp_path / "two.py"
    two.write_text('import os\nos.environ.setdefault("KERAS_BACKEND", "jax")\nif x:\n'
                   '    os.environ["KERAS_BACKEND"] = "torch"\n')
    assert where_set("KERAS_BACKEND", [str(one)]) == "train.py:3", "a comment and a comparison are no assignment"
    assert where_set("KERAS_BACKEND", [str(two)]) is None
    frame = sys._getframe()  # a frame of this file, which sets nothing
    assert describe_setter("XLA_FLAGS", frame).startswith("the script before importing keras (test_activation.py)")


def test_the_face_has_no_argv_trick():
    """The face activates on import without looking at argv; the machinery looks at it in one place only,
    ``locating_the_command``: Python's documented state while it locates the module of ``python -m devswitch``
    (argv[0] "-m"), never to guess how devswitch was started otherwise (no ``invoked_as_cli``). __main__ still
    undoes whatever an earlier import began."""
    face = (ROOT / "devswitch" / "__init__.py").read_text() + (ROOT / "devswitch" / "__main__.py").read_text()
    session = (ROOT / "_devswitch" / "session.py").read_text()
    assert "argv" not in face and "invoked_as_cli" not in session
    tree = ast.parse(session)
    readers = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
               and any(isinstance(n, ast.Attribute) and n.attr in ("argv", "orig_argv") for n in ast.walk(node))}
    assert readers == {"activate_on_import"}, readers  # which hands sys.argv to locating_the_command, and no more
    assert "deactivate()" in (ROOT / "devswitch" / "__main__.py").read_text()
