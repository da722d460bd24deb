"""compare's loose ends: the factory checked before anything starts, one GPU probe per backend, the
factory's own name in the title, and what a training-mode table measured."""

from __future__ import annotations

import json

import pytest

from conftest import SCRIPTS, Child, children
from _devswitch.cli import main


@pytest.mark.parametrize("target, message", [
    (f"{SCRIPTS / 'factories.py'}:buld", r"defines no function 'buld'"),
    (f"{SCRIPTS / 'factories.py'}:tny", r"did you mean 'tiny'\?"),
    ("no_such_module_devswitch:build", r"no module named 'no_such_module_devswitch'"),
])
def test_a_misspelt_factory_is_an_error_before_anything_runs(tmp_path, capsys, target, message):
    import re

    out = tmp_path / "out"
    assert main(["compare", target, "--devices", "cpu", "--precisions", "fp32", "--out", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err) and not out.exists()


def _training_compare(root):
    return {"compare": Child(["-m", "devswitch", "compare", f"{SCRIPTS / 'factories.py'}:unnamed", "--mode",
                              "training", "--devices", "cpu,gpu,gpu:0", "--precisions", "fp32", "--batch-sizes", "8",
                              "--iterations", "3", "--warmup", "1", "--no-peak-probe", "--out", "out"], timeout=300)}


training_compare = children(_training_compare)


@pytest.mark.subprocess
def test_training_table_names_the_factory_its_loss_and_skips_gpus_known_to_be_absent(training_compare):
    done, folder = training_compare("compare")
    out = folder / "out"
    assert done.returncode == 0, done.stderr
    table = (out / "results.md").read_text()
    assert table.startswith("# devswitch compare: unnamed (training)")
    assert "Training: timed `model.train_on_batch` steps (loss sparse_categorical_crossentropy, optimizer SGD)" \
        in table and "3x the forward FLOPs" in table
    assert "`model.predict`" not in table
    doc = json.loads((out / "results.json").read_text())
    # the loss after the same SGD steps from the shared weights: the same configuration as the reference
    (cpu,) = [c for c in doc["cells"] if c["device"] == "cpu"]
    assert doc["reference"]["status"] == "ok" and doc["reference"]["mode"] == "training"
    assert cpu["record"]["accuracy"]["loss_rel_diff"] <= 1e-5 and "| loss vs fp32 reference |" in table
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):  # TensorFlow's own answer, not devswitch's
        assert all(c["status"] == "ok" for c in doc["cells"])
    else:  # the cpu run found no GPU: neither GPU configuration started a process
        assert [c["device"] for c in doc["timing"]["configurations"]] == ["cpu"]
        gpu = [c["status"] for c in doc["cells"] if c["device"] != "cpu"]
        assert len(gpu) == 2 and all("TensorFlow sees no GPU on this machine (found by the cpu fp32" in s
                                     for s in gpu)
