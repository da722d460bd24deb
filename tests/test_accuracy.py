"""Accuracy beside speed: the same weights and input against a strict float32 reference, and --max-error."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import devswitch
from _devswitch import accuracy
from _devswitch.compare import Cell, ResultSet, recommend, recommendation_lines
from _devswitch.compare.resultset import Model
from _devswitch.models import mlp

from conftest import Child, children, native_bf16
from errorparts import printed

FAST = dict(warmup=1, iterations=2, peak_probe=False, predict_baseline=False, min_sample_s=0)


@pytest.fixture(autouse=True)
def applied(on_cpu):
    yield
    keras.config.set_dtype_policy("float32")  # the tests below set Keras' own policy, as a user would


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    keras.utils.set_random_seed(0)
    ref = accuracy.reference(mlp(), samples=16, about={"backend": keras.backend.backend(), "math": "ieee"})
    path = tmp_path_factory.mktemp("reference") / "reference.npz"
    ref.save(path)
    return accuracy.Reference.load(path)  # through the file, as compare's workers get it


def test_the_same_configuration_lands_on_the_reference_at_every_batch_size(reference):
    assert reference.x.shape == (16, 784) and reference.outputs.shape == (16, 10) and reference.about["classifier"]
    records = devswitch.benchmark(mlp(), batch_sizes=(1, 5, 32), reference=reference, **FAST)
    for record in records:  # batch 5 feeds 16 samples as 4 calls, the last padded; batch 32 repeats them
        acc = record.to_dict()["accuracy"]
        assert acc["status"] == "ok" and acc["samples"] == 16 and acc["nonfinite_samples"] == 0
        assert acc["max_rel_error"] <= 1e-6 and acc["top1_agreement"] == 1.0


def test_half_precision_reports_its_error_and_a_float32_last_layer_is_measured_too(reference):
    keras.config.set_dtype_policy("mixed_bfloat16")
    (record,) = devswitch.benchmark(mlp(), batch_sizes=(8,), reference=reference, **FAST)
    bf16 = record.accuracy
    assert bf16["status"] == "ok" and 1e-4 < bf16["max_rel_error"] < 0.1  # bf16 keeps 8 bits of mantissa
    assert bf16["median_rel_error"] <= bf16["max_rel_error"]

    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(512, activation="relu")(inputs)
    hidden = keras.layers.Dense(512, activation="relu")(hidden)
    outputs = keras.layers.Dense(10, activation="softmax", dtype="float32")(hidden)  # the usual mixed recipe
    model = keras.Model(inputs, outputs)
    (record,) = devswitch.benchmark(model, batch_sizes=(8,), reference=reference, **FAST)
    fp16 = record.accuracy
    assert fp16["status"] == "ok" and 0 < fp16["max_rel_error"] < bf16["max_rel_error"]  # 11 bits beat 8


def test_weights_that_do_not_fit_leave_the_timing_and_say_why(reference):
    other = keras.Sequential([keras.Input((784,)), keras.layers.Dense(3)])
    (record,) = devswitch.benchmark(other, batch_sizes=(2,), reference=reference, **FAST)
    assert record.status == "ok" and record.samples_per_s > 0
    assert record.accuracy["status"].startswith("unavailable: ValueError: the model's weights")
    (missing,) = devswitch.benchmark(mlp(), batch_sizes=(2,), reference="no-such-reference.npz", **FAST)
    assert missing.status == "ok" and missing.accuracy["status"].startswith("unavailable: no strict float32")


def test_training_compares_the_loss_after_the_same_steps():
    keras.utils.set_random_seed(0)
    ref = accuracy.reference(mlp(), mode="training", samples=8)
    assert ref.loss > 0 and ref.outputs is None and ref.labels.shape == (8,)
    (record,) = devswitch.benchmark(mlp(), batch_sizes=(4,), mode="training", reference=ref, **FAST)
    acc = record.accuracy
    assert acc["status"] == "ok" and acc["loss_rel_diff"] <= 1e-5 and acc["reference_loss"] == ref.loss


def _cell(precision: str, rate: float, error: float | None) -> Cell:
    record = {"metrics": {"throughput": {"value": rate}},
              "accuracy": None if error is None else {"status": "ok", "max_rel_error": error, "samples": 8}}
    return Cell("tensorflow", "cpu", precision, 8, "ok", precision, record)


def test_max_error_leaves_out_configurations_and_says_which_and_why():
    cells = (_cell("fp32", 100.0, 1e-7), _cell("fp16", 300.0, 3e-2), _cell("bf16", 200.0, None))
    options = {"batch_sizes": [8], "backends": ["tensorflow"], "baseline": "tensorflow cpu fp32"}
    free = ResultSet(options=options, model=Model("m"), cells=cells)
    (free_pick,) = recommend(free)  # fp16 leads, but without intervals nothing is decided: the baseline is kept
    assert free_pick.decision.leader.precision == "fp16" and free_pick.best.precision == "fp32"
    bounded = ResultSet(options={**options, "max_error": 1e-2}, model=Model("m"), cells=cells)
    (pick,) = recommend(bounded)
    assert pick.best.precision == "fp32" and [c.precision for c, _ in pick.excluded] == ["fp16", "bf16"]
    (line,) = recommendation_lines(bounded)
    assert "Left out by --max-error 0.01: cpu fp16 (max relative error 3.0e-02 > 0.01); cpu bf16 (error not " \
           "measured)" in line
    none = ResultSet(options={**options, "max_error": 1e-9}, model=Model("m"), cells=cells)
    assert recommendation_lines(none)[0].startswith("Recommendation, batch 8: none: no measured configuration")


# fp16 runs on every CPU (emulated); bf16 runs only where devswitch sees native bf16 and is "unavailable" elsewhere:
# this compare takes both branches of that decision, one per kind of CPU (the hidden-feature lane runs the other).
# Half types keep far fewer bits than fp32: bf16 ~1e-3, fp16 ~3e-4 on this mlp, fp32 ~1e-7. --max-error 1e-5 lies
# a decade above fp32's bound (1e-6, asserted) and more than a decade below either half type.
def _jax_compare(root):
    return {"compare": Child(["-m", "devswitch", "compare", "mlp", "--backends", "jax", "--devices", "cpu",
                              "--precisions", "fp32,fp16,bf16", "--batch-sizes", "4", "--iterations", "2",
                              "--warmup", "1", "--no-peak-probe", "--no-predict-baseline", "--accuracy-samples", "8",
                              "--max-error", "1e-5", "--out", "out"], timeout=300)}


jax_compare = children(_jax_compare)


@pytest.mark.subprocess
@pytest.mark.cpu_features
def test_compare_reports_the_error_beside_the_speed_and_max_error_excludes_half_types(jax_compare):
    """JAX (quick to start): a reference run, then fp32 and the half types from its weights; across backends, see
    test_backends.test_compare_across_the_three_backends."""
    proc, folder = jax_compare("compare")
    out = folder / "out"
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["reference"]["status"] == "ok" and doc["reference"]["backend"] == "jax"
    cells = {c["precision"]: c for c in doc["cells"]}
    errors = {p: c["record"]["accuracy"]["max_rel_error"] for p, c in cells.items() if c["status"] == "ok"}
    assert errors["fp32"] <= 1e-6 and errors["fp16"] > 1e-4  # fp16 keeps 11 bits of mantissa
    markdown = (out / "results.md").read_text()
    assert "| rel. error vs fp32 (max / median) |" in markdown and "| top-1 agreement vs fp32 |" in markdown
    (left_out,) = [line.partition("Left out by --max-error 1e-05: ")[2] for line in markdown.splitlines()
                   if "Left out by --max-error 1e-05: " in line]
    assert "cpu fp16 (max relative error" in left_out and "cpu fp32" not in left_out
    if native_bf16():
        assert errors["bf16"] > 1e-4 and "cpu bf16 (max relative error" in left_out  # 8 bits of mantissa
    else:
        assert cells["bf16"]["status"].startswith("unavailable: this CPU has no native bf16"), cells["bf16"]["status"]
        assert "bf16" not in errors
    header = (out / "results.csv").read_text().splitlines()[0]
    assert "max_rel_error" in header and "speedup_ci_low" in header
    assert np.isfinite(list(errors.values())).all()


def test_outputs_not_finite_for_some_samples_are_inf_not_nan(reference):
    outputs = reference.outputs.copy()
    outputs[3, 0] = np.nan
    result = accuracy.deviation(reference, outputs)
    assert result["nonfinite_samples"] == 1 and result["max_rel_error"] == float("inf")
    assert np.isfinite(result["median_rel_error"])  # 15 of 16 samples are exact: the median is theirs
    outputs[:] = np.inf
    assert accuracy.deviation(reference, outputs)["median_rel_error"] == float("inf")


@pytest.mark.parametrize("samples", ["0", "00", "+0"])
def test_max_error_without_accuracy_rows_is_refused_before_anything_runs(tmp_path, capsys, samples):
    from _devswitch.cli import main

    assert main(["compare", "mlp", "--devices", "cpu", "--max-error", "1e-2", "--accuracy-samples", samples,
                 "--out", str(tmp_path / "out")]) == 2
    printed(capsys.readouterr().err, named=["--max-error", "--accuracy-samples 0"], fix="--accuracy-samples")
    assert not (tmp_path / "out").exists()
