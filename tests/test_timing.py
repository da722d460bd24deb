"""Timing of Keras calls with real TensorFlow on the CPU."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import devswitch
from conftest import SCRIPTS, Child, children, result_line
from _devswitch.results import read_report, save_report
from _devswitch.timing import BatchTimingCallback, TimingCallback


class Runs:
    """devswitch.runs() read afresh at each look (it returns a snapshot)."""

    def __iter__(self):
        return iter(devswitch.runs())

    def __getitem__(self, index):
        return devswitch.runs()[index]

    def __len__(self):
        return len(devswitch.runs())


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """Apply devswitch in this process with timing on; undo it afterwards."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    devswitch.reset()
    devswitch.configure(device="cpu", report="summary")
    yield Runs()
    devswitch.reset()
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def warnings_seen():
    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Grab()
    logging.getLogger("devswitch").addHandler(handler)
    yield seen
    logging.getLogger("devswitch").removeHandler(handler)


def data(n=256, features=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, features)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def small_model(name="small"):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)], name=name)
    model.compile(optimizer="adam", loss="mse")
    return model


class FakeClock:
    """Advances by a fixed step on every reading."""

    def __init__(self, step=1.0):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_callback_with_injected_clock_records_epochs_and_first_epoch_apart():
    x, y = data(128)
    model = small_model()
    timer = TimingCallback(clock=FakeClock(), sink=None)
    timer.expect(("samples", 128), traced=True)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[timer])
    (record,) = timer.records
    # readings: train_begin 1, then per epoch begin/end 2-3, 4-5, 6-7, train_end 8
    assert [e.seconds for e in record.epochs] == [1.0, 1.0, 1.0]
    assert record.wall_s == 7.0 and record.first_s == 1.0 and record.steady_s == 2.0
    assert record.steps == 4 and record.samples == 128
    assert record.steady_samples_per_s == 128.0 and record.steady_steps_per_s == 4.0
    assert record.traced and record.kind == "fit" and record.status == "ok"


def test_epoch_timing_leaves_batch_hooks_alone_and_batch_timing_is_labelled():
    from keras.src.utils.python_utils import is_default  # what CallbackList checks for async dispatch

    plain, per_batch = TimingCallback(sink=None), BatchTimingCallback(sink=None)
    for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end"):
        assert is_default(getattr(plain, hook)), hook
    assert not is_default(per_batch.on_train_batch_end)  # the price of per-batch timing, hence opt-in
    model = small_model()
    x, y = data(64)
    timer = BatchTimingCallback(sink=None)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[timer])
    assert len(timer.records[0].batch_times_s) == 4


def test_one_import_times_fit_evaluate_predict_with_tracing_apart(timed):
    x, y = data()
    model = small_model("timed")
    model.fit(x, y, epochs=4, batch_size=32, verbose=0, validation_data=(x[:64], y[:64]))
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    model.predict(x, verbose=0)
    fit, evaluate, first_predict, second_predict = timed
    assert [r.kind for r in timed] == ["fit", "evaluate", "predict", "predict"]  # validation is not a run
    assert fit.samples == 256 and len(fit.epochs) == 4 and fit.traced
    assert all(e.validation_seconds > 0 for e in fit.epochs)
    # the first epoch (tracing and compiling) is timed apart from the steady ones, which make the rate
    assert fit.first_s == fit.epochs[0].seconds and fit.steady_s == pytest.approx(sum(e.seconds for e in fit.epochs[1:]))
    assert fit.steady_samples_per_s > 0 and fit.device == "CPU:0" and fit.policy == "float32"
    assert not evaluate.traced  # validation inside fit already built the test function
    assert first_predict.traced and first_predict.steady_samples_per_s is None
    assert not second_predict.traced and second_predict.steady_samples_per_s > 0
    assert second_predict.steady_samples_per_s == pytest.approx(second_predict.samples / second_predict.steady_s)


def test_a_report_reads_back_the_call_records_a_real_fit_wrote(timed, tmp_path):
    x, y = data(64)
    model = small_model("round_trip")
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x[:16], y[:16]))
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    written = list(timed)
    assert save_report(tmp_path / "r.jsonl", written, {"plan": {"device": "cpu"}}) == (tmp_path / "r.jsonl", None)
    (run,) = read_report(tmp_path / "r.jsonl")
    assert written[0].history and written[0].epochs  # the fit's epochs and logs travel too
    assert run.records == tuple(written)  # dataclass equality: every field, floats included, as written
    assert run.plan == {"device": "cpu"} and run.schema_version == 2


def test_policy_and_device_are_read_from_the_model(timed):
    devswitch.configure(precision="bf16")
    model = small_model("bf16")
    model.fit(*data(64), epochs=1, verbose=0)
    record = timed[-1]
    assert record.policy == "mixed_bfloat16" and "bfloat16" in record.compute_dtypes
    assert record.device == "CPU:0"


@pytest.mark.parametrize("kind", ["tf.data", "generator", "steps_per_execution", "subclassed"])
def test_inputs_and_models_of_every_kind_are_timed(timed, kind):
    x, y = data(128)
    model = small_model(kind.replace(".", "_"))
    if kind == "tf.data":
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True), epochs=2, verbose=0)
        assert timed[-1].samples == 128 and timed[-1].steps == 4
    elif kind == "generator":
        def batches():
            while True:
                yield x[:32], y[:32]
        model.fit(batches(), steps_per_epoch=3, epochs=2, verbose=0)
        assert timed[-1].samples is None and timed[-1].steady_steps_per_s > 0  # batch size unknowable
    elif kind == "steps_per_execution":
        model.compile(optimizer="adam", loss="mse", steps_per_execution=4)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        assert timed[-1].samples == 128 and len(timed[-1].epochs) == 2
    else:
        class Twice(keras.Model):
            def __init__(self):
                super().__init__(name="subclassed")
                self.dense = keras.layers.Dense(1)

            def call(self, inputs):
                return self.dense(inputs) * 2.0

        model = Twice()
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        model.predict(x, verbose=0)
        assert [r.kind for r in timed[-2:]] == ["fit", "predict"] and timed[-2].model == "subclassed"


def float16_warnings(seen: list[str]) -> list[str]:
    """The float16-output warnings among ``seen``: those that name their fix, dtype="float32"."""
    return [w for w in seen if 'dtype="float32"' in w]


def test_float16_output_warns_once_naming_the_layer(timed, warnings_seen):
    devswitch.configure(precision="fp16")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="logits"),
                              keras.layers.Softmax(name="probs")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, _ = data(32)
    model.predict(x, verbose=0)
    model.predict(x, verbose=0)
    hits = float16_warnings(warnings_seen)
    assert len(hits) == 1 and "layer 'probs'" in hits[0] and 'dtype="float32"' in hits[0]
    fixed = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Softmax(dtype="float32")])
    fixed.predict(x, verbose=0)
    assert len(float16_warnings(warnings_seen)) == 1
    devswitch.reset()  # forgets what was warned about, as it forgets the rest of the session
    devswitch.configure(device="cpu", report="summary", precision="fp16")
    model.predict(x, verbose=0)
    assert len(float16_warnings(warnings_seen)) == 2


def test_float16_output_names_each_producing_layer_once_and_not_for_the_model_loaded_back(timed, warnings_seen,
                                                                                          tmp_path):
    """The guard names the layer that produces each float16 output (not the model's last layer), says it once,
    and says nothing again for the same model loaded back; a subclassed model gets no guessed layer."""
    devswitch.configure(precision="fp16")
    inputs = keras.Input((8,))
    head = keras.layers.Dense(4, name="head")(inputs)
    side = keras.layers.Dense(4, name="side", dtype="float32")(inputs)
    model = keras.Model(inputs, [head, side, keras.layers.Dropout(0.1, name="drop")(head)], name="branches")
    x, _ = data(32)
    model.predict(x, verbose=0)
    hits = float16_warnings(warnings_seen)
    assert len(hits) == 1 and "layers 'head', 'drop'" in hits[0] and "'side'" not in hits[0]
    model.save(tmp_path / "branches.keras")
    keras.models.load_model(tmp_path / "branches.keras").predict(x, verbose=0)
    assert len(float16_warnings(warnings_seen)) == 1

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.dense, self.dropout = keras.layers.Dense(4, dtype="float32"), keras.layers.Dropout(0.1)

        def call(self, inputs):
            return self.dense(self.dropout(inputs))

    Subclassed().predict(x, verbose=0)
    assert not [w for w in warnings_seen if "dropout" in w]


def test_float16_output_of_a_subclassed_model_names_the_layer_its_call_ends_in(timed, warnings_seen, tmp_path):
    """A subclassed model is traced symbolically once it is built: the guard names the layer its call ends in
    (not the Dropout its __init__ defines last), once, not again for the model loaded back, and leaves the model
    as it was (its layers' nodes, ``layer.output`` still raising); a float32 softmax at the end is not warned."""
    devswitch.configure(precision="fp16")

    @keras.saving.register_keras_serializable("devswitch_tests")
    class EndsInOut(keras.Model):
        def __init__(self, softmax32=False, **kwargs):
            super().__init__(**kwargs)
            self.softmax32 = softmax32
            self.hidden, self.out = keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, name="out")
            self.soft = keras.layers.Activation("softmax", dtype="float32", name="soft") if softmax32 else None
            self.drop = keras.layers.Dropout(0.1, name="drop")

        def call(self, inputs, training=False):
            logits = self.out(self.drop(self.hidden(inputs), training=training))
            return self.soft(logits) if self.soft is not None else logits

        def get_config(self):
            return {**super().get_config(), "softmax32": self.softmax32}

    x, _ = data(32)
    y = np.zeros((32, 3), "float32")
    model = EndsInOut(name="ends_in_out")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    hits = float16_warnings(warnings_seen)
    assert len(hits) == 1 and "model 'ends_in_out'" in hits[0] and "layer 'out'" in hits[0], hits
    assert "'drop'" not in hits[0]
    assert all(len(layer._inbound_nodes) == len(layer._outbound_nodes) == 0 for layer in model._flatten_layers())
    with pytest.raises(AttributeError, match="never been called"):
        model.out.output  # noqa: B018 - the trace left no symbolic call behind
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.save(tmp_path / "ends_in_out.keras")
    keras.models.load_model(tmp_path / "ends_in_out.keras").predict(x, verbose=0)
    assert len(float16_warnings(warnings_seen)) == 1

    fixed = EndsInOut(softmax32=True, name="fixed")
    fixed.compile(optimizer="adam", loss="mse")
    fixed.fit(x, y, epochs=1, batch_size=16, verbose=0)
    fixed.predict(x, verbose=0)
    assert not [w for w in warnings_seen if "'fixed'" in w]


def test_float16_output_of_a_subclassed_model_fed_a_dataset_of_dicts_is_traced_from_its_element_spec(
        timed, warnings_seen):
    """A subclassed model trained on a tf.data.Dataset of (dict of inputs, labels) is traced on KerasTensors
    built from the dataset's element_spec: the guard names the layer its call ends in."""
    devswitch.configure(precision="fp16")

    class TwoInputs(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.join, self.head = keras.layers.Concatenate(), keras.layers.Dense(2, name="head")

        def call(self, inputs):
            return self.head(self.join([inputs["a"], inputs["b"]]))

    x, _ = data(32)
    dataset = tf.data.Dataset.from_tensor_slices(({"a": x[:, :4], "b": x[:, 4:]}, np.zeros((32, 2), "float32")))
    model = TwoInputs(name="two_inputs")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(dataset.batch(8), epochs=1, verbose=0)
    hits = float16_warnings(warnings_seen)
    assert len(hits) == 1 and "model 'two_inputs'" in hits[0] and "layer 'head'" in hits[0], warnings_seen


def test_float16_output_of_a_subclassed_model_ending_in_an_op_or_raw_tf_is_not_guessed(timed, warnings_seen):
    """A call that ends in a bare op (``* 2.0``) or that cannot be traced (raw TensorFlow on a KerasTensor)
    names no layer and raises nothing: the user's calls run as they would."""
    devswitch.configure(precision="fp16")

    class Doubled(keras.Model):
        def __init__(self, raw=False, **kwargs):
            super().__init__(**kwargs)
            self.raw, self.dense = raw, keras.layers.Dense(2, name="dense_half")

        def call(self, inputs):
            hidden = tf.math.softplus(inputs) if self.raw else inputs
            return self.dense(hidden) * 2.0

    x, _ = data(16)
    for raw in (False, True):
        model = Doubled(raw=raw, name=f"doubled_{raw}")
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, np.zeros((16, 2), "float32"), epochs=1, verbose=0)
        assert model.predict(x, verbose=0).shape == (16, 2)
    assert not float16_warnings(warnings_seen) and not [w for w in warnings_seen if "could not do" in w], warnings_seen


def test_nan_loss_is_reported(timed, warnings_seen):
    x, y = data(64)
    y[0, 0] = np.inf
    model = small_model("nan")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert timed[-1].nonfinite_loss_epochs == (0, 1)
    assert any("model 'nan'" in w and "NaN/inf" in w and w.endswith("1, 2") for w in warnings_seen), warnings_seen


def test_a_crashing_call_keeps_what_was_measured(timed):
    x, y = data(64)
    model = small_model("crash")

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("boom in epoch 2")

    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, epochs=5, verbose=0, callbacks=[StopAfterTwo()])
    record = timed[-1]
    assert record.status == "failed: RuntimeError: boom in epoch 2"
    assert len(record.epochs) >= 1 and record.wall_s > 0


def _timed_runs(root):
    """timed_script.py two more ways (report off, a crash); with a report file it is conftest's
    ``timed_script_runs("imported")``, shared with test_run.py."""
    script = SCRIPTS / "timed_script.py"
    return {"off": Child([script], {"DEVSWITCH_REPORT": "off"}),
            "crash": Child([script, "--crash"], {"DEVSWITCH_REPORT": "crash.json"})}


timed_runs = children(_timed_runs)


@pytest.mark.subprocess
def test_summary_at_exit_and_json_report(timed_script_runs):
    proc, folder = timed_script_runs("imported")  # DEVSWITCH_REPORT=out/runs.json, in its folder
    report = "out/runs.json"
    assert proc.returncode == 0, proc.stderr
    assert result_line(proc.stdout)["runs"] == 4
    assert "devswitch: timed Keras calls" in proc.stderr and f"wrote 4 record(s) to {report}" in proc.stderr
    (doc,) = read_report(folder / report)  # one line per run (JSON Lines)
    assert doc.schema_version == 2 and len(doc.records) == 4
    assert doc.config["report"]["source"] == "env var"
    assert doc.environment["tensorflow"] == tf.__version__ and doc.environment["cpu"]
    assert doc.records[0].samples == 192
    written = json.loads((folder / report).read_text().splitlines()[0])
    assert written["records"][0]["metrics"]["samples"] == {"value": 192, "unit": "samples"}


@pytest.mark.subprocess
def test_report_off_prints_nothing_and_crash_keeps_records(timed_runs):
    proc, _ = timed_runs("off")
    assert proc.returncode == 0 and "timed Keras calls" not in proc.stderr
    assert result_line(proc.stdout)["runs"] == 0
    proc, folder = timed_runs("crash")
    assert proc.returncode == 1 and "Traceback" in proc.stderr  # the script's own error, as Python shows it
    (doc,) = read_report(folder / "crash.json")
    assert [r.status for r in doc.records][:4] == ["ok"] * 4
    assert doc.records[-1].status.startswith("failed: ValueError")
