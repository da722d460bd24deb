"""In a notebook: %load_ext devswitch, the %devswitch magic, and each cell's timed calls as an HTML table
(a real Jupyter kernel, executed with nbclient)."""

from __future__ import annotations

import pytest

import devswitch
from devswitch.render.calls import Calls
from devswitch.results import CallRecord


def test_runs_and_summary_print_as_the_table_and_render_as_html():
    record = CallRecord("predict", "tiny<b>", "ok", 0.5, True, 0.5, None, 2, 64, None, None, device="CPU:0",
                        policy="float32")
    calls = Calls([record])
    assert str(calls).startswith("devswitch: timed Keras calls") and repr(calls) == str(calls)
    html = calls._repr_html_()
    assert "<table class='devswitch'>" in html and "tiny&lt;b&gt;" in html and "tiny<b>" not in html
    assert isinstance(devswitch.runs(), list) and str(devswitch.summary()) == "devswitch: no timed Keras calls yet"


def test_the_magic_parses_settings_like_devswitch_flags():
    from devswitch.errors import ConfigError
    from devswitch.notebook import parse

    assert parse("precision=bf16 device=cpu") == parse("precision=bf16,device=cpu") == {"precision": "bf16",
                                                                                        "device": "cpu"}
    with pytest.raises(ConfigError, match="'bf16' is not KEY=VALUE"):
        parse("bf16")


def test_the_magic_takes_a_gpu_list_as_devswitch_flags_does():
    from devswitch.notebook import parse
    from devswitch.sources import parse_flags

    assert parse("device=gpu:0,1") == {"device": "gpu:0,1"}
    assert parse("device=gpu:0,1 precision=fp16") == {"device": "gpu:0,1", "precision": "fp16"}
    assert [(e.key, e.raw) for e in parse_flags("device=gpu:0,1")] == list(parse("device=gpu:0,1").items())


def test_an_unbalanced_quote_in_the_magic_is_a_message_not_a_traceback(capsys):
    from devswitch.notebook import devswitch_magic

    devswitch_magic('precision="bf16 device=cpu')
    out = capsys.readouterr().out
    assert out.startswith("devswitch: error: %devswitch: cannot read") and "No closing quotation" in out
    assert "Traceback" not in out and devswitch.plan() is None


def test_the_first_cell_after_a_reset_shows_its_calls(monkeypatch, tmp_path):
    """After devswitch.reset() the notebook's cursor starts over with the runs, so new calls are shown."""
    import keras
    import numpy as np

    from devswitch.notebook import new_calls

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


@pytest.mark.subprocess
def test_a_real_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        f"import os; os.environ.pop('DEVSWITCH_DISABLE', None); os.environ['HOME'] = {str(tmp_path)!r}",
        "%load_ext devswitch",
        "%devswitch precision=bf16 device=cpu report=summary",
        "import keras, numpy as np\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "model.compile(loss='mse')\n"
        "model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=2, verbose=0)\n"
        "print(model.layers[0].compute_dtype)",
        "%devswitch precision=fp8",
        "import devswitch; devswitch.summary()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()

    def text(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    def html(cell):
        return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)

    out = nb.cells
    assert "precision=bf16" in text(out[2])
    assert "bfloat16" in text(out[3]) and "<table class='devswitch'>" in html(out[3]) and "<td>fit</td>" in html(out[3])
    assert "devswitch: error:" in text(out[4]) and "invalid value 'fp8'" in text(out[4])
    assert not any(o.output_type == "error" for cell in out for o in cell.outputs)
    assert "<td>fit</td>" in html(out[5])
