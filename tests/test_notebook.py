"""In a notebook: %load_ext devswitch, the %devswitch magic, and each cell's timed calls as an HTML table
(a real Jupyter kernel, executed with nbclient)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import devswitch
from conftest import Child, children, native_bf16
from errorparts import parts, printed
from _devswitch.devices import Cpu, Inventory
from _devswitch.render.calls import Calls
from _devswitch.results import CallRecord


def test_runs_and_summary_print_as_the_table_and_render_as_html():
    record = CallRecord("predict", "tiny<b>", "ok", 0.5, True, 0.5, None, 2, 64, None, None, device="CPU:0",
                        policy="float32")
    calls = Calls([record])
    assert str(calls).startswith("devswitch: timed Keras calls") and repr(calls) == str(calls)
    html = calls._repr_html_()
    assert "<table class='devswitch'>" in html and "tiny&lt;b&gt;" in html and "tiny<b>" not in html
    assert isinstance(devswitch.runs(), list) and str(devswitch.summary()) == "devswitch: no timed Keras calls yet"


def test_the_magic_parses_settings_like_devswitch_flags():
    from _devswitch.errors import ConfigError
    from _devswitch.notebook import parse

    assert parse("precision=bf16 device=cpu") == parse("precision=bf16,device=cpu") == {"precision": "bf16",
                                                                                        "device": "cpu"}
    with pytest.raises(ConfigError) as info:
        parse("bf16")
    parts(info, ConfigError, where="%devswitch", named=["'bf16'", "KEY=VALUE"])


def test_the_magic_takes_a_gpu_list_as_devswitch_flags_does():
    from _devswitch.notebook import parse
    from _devswitch.sources import parse_flags

    assert parse("device=gpu:0,1") == {"device": "gpu:0,1"}
    assert parse("device=gpu:0,1 precision=fp16") == {"device": "gpu:0,1", "precision": "fp16"}
    assert [(e.key, e.raw) for e in parse_flags("device=gpu:0,1")] == list(parse("device=gpu:0,1").items())


def test_an_unbalanced_quote_in_the_magic_is_a_message_not_a_traceback(capsys):
    from _devswitch.notebook import devswitch_magic

    devswitch_magic('precision="bf16 device=cpu')
    out = capsys.readouterr().out
    assert out.startswith("devswitch: error: ")  # one error, first, no traceback
    printed(out, where="%devswitch", named=["No closing quotation"])  # shlex's own reason
    assert devswitch.plan() is None


def test_the_first_cell_after_a_reset_shows_its_calls(monkeypatch, tmp_path):
    """After devswitch.reset() the notebook's cursor starts over with the runs, so new calls are shown."""
    import keras
    import numpy as np

    from _devswitch.notebook import new_calls

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def cell(calls: int) -> None:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(loss="mse")
        for _ in range(calls):
            model.predict(np.zeros((8, 4)), verbose=0)

    devswitch.configure(device="cpu", report="summary")
    new_calls()
    cell(2)
    assert [r.kind for r in new_calls()] == ["predict", "predict"] and new_calls() == []
    devswitch.reset()
    devswitch.configure(device="cpu", report="summary")
    cell(1)
    assert [r.kind for r in new_calls()] == ["predict"]


PIECES = st.sampled_from(["device=", "precision=", "report=", "threads=", "backend=", "profile=", "cpu", "gpu:0,1",
                          "bf16", "fp8", "half", "off", "x.json", "4:2", "'", '"', "\\", "=", ",", " ", "  ", "\t",
                          "\n", "#", "$HOME", "-h", "%devswitch", "\x00", "\x1b[2J", "\u2028", "\u202e", "é", "٤"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=12).map("".join)))
def test_any_magic_line_prints_one_message_and_never_raises(line, no_apply, capsys):
    """Whatever a %devswitch line holds, the magic prints one summary or one error message, no traceback."""
    from _devswitch.notebook import devswitch_magic

    devswitch_magic(line)
    out = capsys.readouterr().out
    assert out.startswith("devswitch: ") and "Traceback" not in out
    assert out.count("devswitch: ") == 1 or "devswitch: error:" in out


@pytest.fixture
def no_apply(monkeypatch, tmp_path):
    """The magic's settings resolved and decided for a CPU-only machine, but nothing applied to Keras."""
    from _devswitch import session
    from _devswitch.decide import decide

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "apply", lambda cfg, inventory=None, announce=True: decide(cfg, CPU_ONLY, {}).plan)


CPU_ONLY = Inventory(Cpu("Test CPU", 4, frozenset({"AVX2"})))


def test_the_magic_prints_one_summary_and_a_warning_only_when_it_is_new(monkeypatch, tmp_path, capfd):
    """%devswitch prints the summary once (not again through the log), and the GPU-fallback warning once:
    not again at the next %devswitch that does not change the device."""
    from _devswitch import apply
    from _devswitch.notebook import devswitch_magic

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(apply, "detect", lambda backend: CPU_ONLY)

    def magic(line: str) -> tuple[str, str]:
        devswitch_magic(line)
        return capfd.readouterr()

    summary, warning = "devswitch: device=cpu (fallback", "(fallback=cpu)"  # the summary's device; the warning's end
    out, err = magic("device=gpu report=off")
    assert out.count(summary) == 1 and summary not in err
    assert err.count(warning) == 1
    for line in ("precision=bf16", ""):
        out, err = magic(line)
        assert out.count(summary) == 1 and warning not in err, line
    assert "precision=bf16" in out
    magic("device=cpu")
    assert warning in magic("device=gpu")[1]  # asked for again after the CPU: new again


def test_a_cell_whose_result_is_the_table_shows_one_table(monkeypatch):
    """The after-cell hook adds no second table to a cell whose own result is devswitch.summary()."""
    from IPython import display

    from _devswitch import notebook, state

    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    record = CallRecord("predict", "m", "ok", 0.5, True, 0.5, None, 2, 64, None, None, device="CPU:0",
                        policy="float32")
    state.current().runs.append(record)
    notebook._show_new_calls(SimpleNamespace(result=devswitch.summary()))
    assert shown == [] and notebook.new_calls() == []
    state.current().runs.append(record)
    notebook._show_new_calls(SimpleNamespace(result=None))
    assert shown == [[record]]


def test_a_reimport_keeps_what_configure_set(monkeypatch, tmp_path):
    """%reload_ext devswitch re-runs the import's activation: configure()'s values stay in effect."""
    from _devswitch import session

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEVSWITCH_DISABLE")
    devswitch.configure(device="cpu", precision="bf16", report="off")
    session.activate_on_import()
    assert devswitch.config()["precision"].source == "explicit" and devswitch.plan().precision == "bf16"


class InvalidArgumentError(Exception):
    """Named as TensorFlow's, whose messages these are (copied from TensorFlow 2.20)."""


@pytest.mark.parametrize("message, expected", [
    pytest.param("Graph execution error:\n\nDetected at node StatefulPartitionedCall/sequential_1/dense_1/BiasAdd "
                 "defined at (most recent call last):\n<stack traces unavailable>\nMatrix size-incompatible: "
                 "In[0]: [8,5], In[1]: [4,2]\n\t [[{{node StatefulPartitionedCall/sequential_1/dense_1/BiasAdd}}]] "
                 "[Op:__inference_multi_step_on_iterator_709]",
                 "Matrix size-incompatible: In[0]: [8,5], In[1]: [4,2]", id="no stack trace"),
    pytest.param("Graph execution error:\n\nDetected at node gradient_tape/compile_loss/mse/sub/BroadcastGradientArgs "
                 "defined at (most recent call last):\n  File \"/tmp/x.py\", line 9, in <module>\n\n  File \"/k/"
                 "trainer.py\", line 81, in train_step\n    loss = self.compute_loss(x, y)\n\nIncompatible shapes: "
                 "[8,3] vs. [8,2]\n\t [[{{node gradient_tape/compile_loss/mse/sub/BroadcastGradientArgs}}]] "
                 "[Op:__inference_multi_step_on_iterator_1418]",
                 "Incompatible shapes: [8,3] vs. [8,2]", id="with the frames and a source line"),
    pytest.param("Graph execution error:\n\nDetected at node assert/Assert defined at (most recent call last):\n"
                 "  File \"/tmp/x.py\", line 14, in f\n\nassertion failed: [must be positive.  ] [-1]\n\t "
                 "[[{{node assert/Assert}}]] [Op:__inference_f_1447]",
                 "assertion failed: [must be positive.  ] [-1]", id="an assertion"),
    pytest.param("Matrix size-incompatible: In[0]: [8,5]", "Matrix size-incompatible: In[0]: [8,5]", id="one line"),
])
def test_a_failed_calls_row_carries_the_frameworks_message(message, expected):
    from _devswitch.timing import failure

    assert failure(InvalidArgumentError(message)) == f"failed: InvalidArgumentError: {expected}"


def _cells(home) -> list[str]:
    return [
        f"import os; os.environ.pop('DEVSWITCH_DISABLE', None); os.environ['HOME'] = {str(home)!r}",
        "%load_ext devswitch",
        "%devswitch precision=bf16 device=cpu report=summary",
        "import keras, numpy as np\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "model.compile(loss='mse')\n"
        "model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=2, verbose=0)\n"
        "print(model.layers[0].compute_dtype)",
        "%devswitch precision=fp8",
        "import devswitch\nmodel.predict(np.zeros((2, 4)), verbose=0)\ndevswitch.summary()",
        "devswitch.configure(xla='false')\n%reload_ext devswitch\nprint(devswitch.config()['xla'].source)",
        "model.fit(np.zeros((8, 5)), np.zeros((8, 2)), verbose=0)",
        "%devswitch 'precision=bf16",
    ]


# nbclient executes the notebook in a real Jupyter kernel (started, as from the test process, with
# DEVSWITCH_DISABLE=1, which the first cell removes) and writes it back with its outputs
EXECUTE = """import json, sys
import nbclient, nbformat
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in json.load(open('cells.json'))])
nbclient.NotebookClient(nb, timeout=300, kernel_name='python3', allow_errors=True,
                        resources={'metadata': {'path': sys.argv[1]}}).execute()
nbformat.write(nb, 'executed.ipynb')
"""


def _notebook(root):
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("nbformat", "nbclient", "ipykernel")):
        return {}

    def cells(folder):
        (folder / "cells.json").write_text(json.dumps(_cells(folder)))

    return {"notebook": Child(["-c", EXECUTE, root / "notebook"], {"DEVSWITCH_DISABLE": "1"}, prepare=cells)}


notebook = children(_notebook)


@pytest.mark.subprocess
@pytest.mark.cpu_features
def test_a_real_notebook(notebook):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    done, folder = notebook("notebook")
    assert done.returncode == 0, done.stderr
    nb = nbformat.read(folder / "executed.ipynb", as_version=4)

    def text(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    def html(cell):
        return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)

    out = nb.cells
    assert text(out[2]).count("devswitch: device=cpu") == 1  # one summary, not a second one through the log
    assert "precision=bf16" in text(out[2])
    # asked for explicitly, bf16 runs either way; on a CPU without native bf16 the summary warns (once)
    assert text(out[2]).count("bf16 is emulated") == (0 if native_bf16() else 1), text(out[2])
    assert "bfloat16" in text(out[3]) and "<table class='devswitch'>" in html(out[3]) and "<td>fit</td>" in html(out[3])
    printed(text(out[4]), where="devswitch.configure(precision=...)", named=["'fp8'"])
    assert "<td>predict</td>" in html(out[5]) and html(out[5]).count("<table") == 1  # one table per cell
    assert "explicit" in text(out[6])
    assert "failed: InvalidArgumentError: " in html(out[7]) and "[8,5]" in html(out[7])  # status, class, shape
    assert [o.ename for o in out[7].outputs if o.output_type == "error"] == ["InvalidArgumentError"]
    assert text(out[8]).startswith("devswitch: error: %devswitch: cannot read")
    assert not any(o.output_type == "error" for cell in out[:7] + out[8:] for o in cell.outputs)
