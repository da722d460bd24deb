"""In a notebook: %load_ext devswitch, the %devswitch magic, and each cell's timed calls as an HTML table
(a real Jupyter kernel, executed with nbclient)."""

from __future__ import annotations

import pytest

import devswitch
from devswitch.results import CallRecord, Calls


def test_runs_and_summary_print_as_the_table_and_render_as_html():
    record = CallRecord("predict", "tiny<b>", "ok", 0.5, True, 0.5, None, 2, 64, None, None, device="CPU:0",
                        policy="float32")
    calls = Calls([record])
    assert str(calls).startswith("devswitch: timed Keras calls") and repr(calls) == str(calls)
    html = calls._repr_html_()
    assert "<table class='devswitch'>" in html and "tiny&lt;b&gt;" in html and "tiny<b>" not in html
    assert isinstance(devswitch.runs(), list) and str(devswitch.summary()) == "devswitch: no timed Keras calls yet"


def test_the_magic_parses_settings_like_devswitch_flags():
    from devswitch.errors import UsageError
    from devswitch.notebook import parse

    assert parse("precision=bf16 device=cpu") == parse("precision=bf16,device=cpu") == {"precision": "bf16",
                                                                                        "device": "cpu"}
    with pytest.raises(UsageError, match="'bf16' is not key=value"):
        parse("bf16")


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
