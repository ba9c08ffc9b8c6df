"""Towers: the hardware group, placement, and proof that towers equal one device."""
import json

import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from runner.cli.app import run
from runner.core.errors import ConfigError
from runner.engine.hardware import place
from runner.engine.model import shared_model
from runner.models import MODELS
from runner.pipelines import PIPELINES
from runner.pipelines.base import Batch
from runner.trainers import TRAINERS
from tests.helpers import TINY, compose, option, run_cli

v1 = tf.compat.v1
NO_GPU = not tf.config.list_physical_devices("GPU")


def _place(name: str, **overrides):
    """runner.engine.hardware.place with an option's values (precision is the model's, not the placement's)."""
    params = {k: v for k, v in vars(option("hardware", name, **overrides)).items() if k not in ("name", "precision")}
    return place(name, **params)


def test_cpu_towers_run_on_logical_cpu_devices():
    placement = _place("cpu4")
    assert placement.devices == ["/cpu:0", "/cpu:1", "/cpu:2", "/cpu:3"] and placement.variable_device == "/cpu:0"
    assert placement.session_config.device_count["CPU"] == 4


def test_auto_takes_one_gpu_when_tensorflow_sees_one_else_the_cpu(monkeypatch, caplog):
    from runner.engine import hardware

    caplog.set_level("INFO", logger="runner")
    monkeypatch.setattr(hardware, "_said", set())  # said once per process: this test hears it afresh
    if NO_GPU:
        assert _place("auto").devices == ["/cpu:0"]
        assert "no GPU is visible, training on the CPU" in caplog.text
    fake = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]  # as a machine with one GPU lists it
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: fake if kind == "GPU" else [])
    placement = _place("auto")
    assert placement.devices == ["/gpu:0"] and placement.variable_device == "/cpu:0"  # the tutorial's placement
    assert "a GPU is visible, training on /gpu:0" in caplog.text


def test_xla_turns_on_auto_clustering():
    off, on = _place("cpu").session_config, _place("cpu", xla=True).session_config
    assert off.graph_options.optimizer_options.global_jit_level != v1.OptimizerOptions.ON_1
    assert on.graph_options.optimizer_options.global_jit_level == v1.OptimizerOptions.ON_1


@pytest.mark.skipif(not NO_GPU, reason="needs a machine without GPUs")
def test_missing_gpus_warn_once_and_use_the_cpu(caplog):
    placement = _place("gpu2")
    assert placement.devices == ["/cpu:0", "/cpu:0"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["hardware=gpu2 asks for 2 GPU(s) but this machine has 0: running its 2 tower(s) on the CPU"]
    with pytest.raises(ConfigError, match="asks for 2 GPU.*hardware.strict=false"):
        _place("gpu2", strict=True)


def test_each_trainer_runs_the_models_update_ops_once_a_step():
    """UPDATE_OPS (batch norm's moving statistics) run with every step, once: tower 0's on towers."""
    def counting_model(images, config, *, num_classes, training):
        counter = v1.get_variable("counter", [], initializer=v1.zeros_initializer(), trainable=False)
        if training:
            v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, counter.assign_add(1.0))
        weights = v1.get_variable("weights", [int(np.prod(images.shape[1:])), num_classes])
        return tf.matmul(tf.reshape(images, [-1, weights.shape[0]]), weights)

    for trainer, towers in (("single", 1), ("towers", 2)):
        graph = tf.Graph()
        with graph.as_default():
            model = shared_model(counting_model, 10, None, "fp32")
            batches = [Batch(tf.zeros([4, 2, 2, 1]), tf.zeros([4], tf.int32), 4) for _ in range(towers)]
            _, _, train_op = TRAINERS.get(trainer)(model, batches, v1.train.GradientDescentOptimizer(0.1),
                                                v1.train.get_or_create_global_step(),
                                                [f"/cpu:{i}" for i in range(towers)], "/cpu:0")
            counter = [v for v in v1.global_variables() if v.op.name == "counter"][0]
            init = v1.global_variables_initializer()
        with v1.Session(graph=graph, config=v1.ConfigProto(device_count={"CPU": towers})) as sess:
            sess.run(init)
            for _ in range(3):
                sess.run(train_op)
            assert sess.run(counter) == 3.0, trainer


def _one_step(trainer: str, model_name: str, params: dict, x, y, towers: int, initial: dict | None = None):
    """Variables before and after one SGD step of ``trainer`` with x, y split evenly over ``towers``."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        step = v1.train.get_or_create_global_step()
        model = shared_model(MODELS.get(model_name), 10, option("model", model_name, **params), "fp32")
        batches = [Batch(tf.constant(xi), tf.constant(yi), len(yi))
                   for xi, yi in zip(np.split(x, towers), np.split(y, towers))]
        _, _, train_op = TRAINERS.get(trainer)(model, batches, v1.train.GradientDescentOptimizer(0.1), step,
                                            [f"/cpu:{i}" for i in range(towers)], "/cpu:0")
        variables = v1.trainable_variables()
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph, config=v1.ConfigProto(device_count={"CPU": towers})) as sess:
        sess.run(init)
        for var in variables if initial else []:
            var.load(initial[var.op.name], sess)
        before = {v.op.name: sess.run(v) for v in variables}
        sess.run(train_op)
        return before, {v.op.name: sess.run(v) for v in variables}


@pytest.mark.parametrize("model_name,params,shape", [
    ("mlp", {"hidden1": 128, "hidden2": 32}, (28, 28, 1)),
    ("cifar10_cnn", {"weight_decay": 0.004}, (24, 24, 3)),
])
def test_two_towers_of_batch_b_update_like_one_device_with_batch_2b(model_name, params, shape):
    rng = np.random.default_rng(0)
    b = 16
    x = rng.standard_normal((2 * b, *shape)).astype(np.float32)
    y = rng.integers(0, 10, 2 * b).astype(np.int32)
    initial, single = _one_step("single", model_name, params, x, y, towers=1)
    _, towers = _one_step("towers", model_name, params, x, y, towers=2, initial=initial)
    _, half = _one_step("single", model_name, params, x[:b], y[:b], towers=1, initial=initial)
    for name in initial:
        assert not np.allclose(single[name], initial[name]) or name.endswith("biases")
        np.testing.assert_allclose(towers[name], single[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert any(not np.allclose(half[n], single[n], rtol=1e-4, atol=1e-6) for n in initial)  # both halves count


@pytest.mark.parametrize("pipeline", PIPELINES.names())
def test_towers_share_one_input_pipeline_and_take_disjoint_slices(tiny_digits, pipeline, caplog):
    """One reader set and shuffle queue (or stream, or feed) for all towers; each tower gets its own batch."""
    from runner.config.hydra import settings
    from runner.engine.graph import build_train_graph
    from runner.engine.session import session
    from runner.pipelines.base import merged_feed
    from runner.run.build import build_parts

    caplog.set_level("INFO", logger="runner")
    cfg = compose(*TINY, f"pipeline={pipeline}", "hardware=cpu2", "pipeline.num_threads=2"
                  if pipeline == "queue" else "seed=0")
    parts = build_parts(settings(cfg), tiny_digits)
    tg = build_train_graph(parts, 50, 0, None)
    assert len(tg.batches) == 2 and tg.examples_per_step == 100
    shuffle_queues = [op for op in tg.graph.get_operations() if op.type == "RandomShuffleQueueV2"]
    assert len(shuffle_queues) == (1 if pipeline == "queue" else 0)
    assert caplog.text.count("Filling queue") == (1 if pipeline == "queue" else 0)
    with session(tg.graph, parts.session_config, tg.batches) as (sess, _):
        first, second = sess.run([[b.images, b.labels] for b in tg.batches], merged_feed(tg.batches))
    assert len(first[1]) == len(second[1]) == 50
    pixels = {x.tobytes() for x in first[0]}
    assert not pixels & {x.tobytes() for x in second[0]}  # the towers' examples differ


@pytest.mark.parametrize("pipeline", PIPELINES.names())
def test_every_pipeline_trains_on_two_towers_without_naming_a_trainer(tmp_path, tiny_digits, pipeline):
    summary = run(compose(*TINY, "hardware=cpu2", f"pipeline={pipeline}", "max_steps=60", "log_every=30",
                          "optimizer.lr=0.1", "eval_splits=[test]"), str(tmp_path))
    assert summary["trainer"] == "towers" and summary["devices"] == ["/cpu:0", "/cpu:1"]
    assert summary["examples_per_step"] == 200
    assert summary["final_precision"]["test"] > 0.3


def test_checkpoints_are_portable_across_tower_counts(tmp_path, tiny_digits):
    first = run(compose(*TINY, "hardware=cpu2", "max_steps=40", "eval_splits=[test]"), str(tmp_path))
    (tmp_path / ".hydra").mkdir()
    saved = {**first["config"], "hardware": OmegaConf.to_container(compose("hardware=cpu").hardware)}
    (tmp_path / ".hydra" / "config.yaml").write_text(json.dumps(saved))  # as Hydra writes it, on one device
    evaluated = run(compose("mode=eval"), str(tmp_path))
    assert evaluated["step"] == 40
    assert evaluated["results"]["test"]["precision"] == pytest.approx(first["final_precision"]["test"])
    resumed = run(compose(*TINY, "hardware=cpu4", "max_steps=50", "eval_splits=[test]"), str(tmp_path))
    assert resumed["steps"] == 50 and resumed["steps_this_run"] == 10 and len(resumed["devices"]) == 4


@pytest.mark.slow  # a whole CLI run; the warning and the placement are tested above in-process
@pytest.mark.skipif(not NO_GPU, reason="needs a machine without GPUs")
def test_gpu2_runs_here_on_the_cpu(tmp_path):
    proc = run_cli("dataset=shapes", "dataset.num_train=300", "dataset.num_test=50", "batch_size=16",
                   "hardware=gpu2", "max_steps=4", "log_every=2", f"run_dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("asks for 2 GPU(s) but this machine has 0") == 1
    assert "devices=/cpu:0,/cpu:0 trainer=towers" in proc.stdout
    strict = run_cli("hardware=gpu2", "hardware.strict=true", *TINY, f"run_dir={tmp_path}/strict")
    assert strict.returncode == 2 and "hardware.strict=false" in strict.stdout


def test_towers_build_under_the_tutorials_name_scopes_with_shared_variables_on_the_cpu(tiny_digits):
    """cifar10_multi_gpu_train: tower_i name scopes, one set of variables (on the CPU) that every tower reads."""
    from runner.config.hydra import settings
    from runner.engine.graph import build_train_graph
    from runner.run.build import build_parts

    parts = build_parts(settings(compose(*TINY, "hardware=cpu2", "pipeline=tf_data")), tiny_digits)
    tg = build_train_graph(parts, 50, 0, None)
    ops = tg.graph.get_operations()

    def devices(ops) -> set[str]:
        return {tf.DeviceSpec.from_string(op.device).to_string() for op in ops}

    for i in range(2):
        matmuls = [op for op in ops if op.type == "MatMul" and op.name.startswith(f"tower_{i}/hidden1/")]
        assert matmuls and devices(matmuls) == {f"/device:CPU:{i}"}
    variables = tg.graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES)
    assert sorted(v.op.name for v in variables) == sorted(
        f"{layer}/{kind}" for layer in ("hidden1", "hidden2", "softmax_linear") for kind in ("weights", "biases"))
    assert devices(variables) == {"/device:CPU:0"}
    assert not [op for op in ops if op.name.startswith("tower_1/") and op.type == "VarHandleOp"]


def test_a_model_that_makes_its_own_variables_is_refused_when_its_eval_is_built(tiny_digits):
    """A model whose variables are not made by tf.compat.v1.get_variable (as Keras layers make theirs) would be
    evaluated with a second, untrained copy: refused naming the rule, not evaluated at chance."""
    from runner.config.hydra import settings
    from runner.core.errors import RunnerError
    from runner.engine.evals import build_evals
    from runner.engine.graph import build_train_graph
    from runner.run.build import build_parts

    parts = build_parts(settings(compose(*TINY)), tiny_digits)

    def own_variables(images, config, num_classes, training):
        weights = tf.Variable(tf.zeros([int(np.prod(images.shape[1:])), num_classes]), name="dense_kernel")
        return tf.matmul(tf.reshape(images, [-1, weights.shape[0]]), weights)

    parts.model = shared_model(own_variables, 10, None, "fp32")
    tg = build_train_graph(parts, 50, 0, None)
    refused = r"made new variables when built again for evaluation \(eval_test/dense_kernel.*tf.compat.v1.get_variable"
    with tg.graph.as_default(), pytest.raises(RunnerError, match=refused):
        build_evals(parts, ["test"], 50)
    plain = build_parts(settings(compose(*TINY)), tiny_digits)  # the project's own models share theirs
    tg = build_train_graph(plain, 50, 0, None)
    with tg.graph.as_default():
        assert set(build_evals(plain, ["train", "test"], 50)) == {"train", "test"}


def test_a_model_class_is_built_once_per_graph_and_shared_by_the_towers_and_the_evals(tiny_digits):
    """A model registered as a class owns its variables (as Keras layers do, made at the first call): one instance
    per graph serves both towers and the evals, its variables are named without a tower, on the variable device,
    and an eval with moving averages reads them through a second instance."""
    from runner.config.hydra import settings
    from runner.engine.evals import build_evals
    from runner.engine.graph import build_train_graph
    from runner.engine.model import moving_average_getter
    from runner.run.build import build_parts

    v1 = tf.compat.v1
    made = []

    class Linear:
        def __init__(self, config, *, num_classes, precision):
            made.append(precision)
            self.num_classes, self.weights = num_classes, None

        def __call__(self, images, *, training):
            x = tf.reshape(images, [-1, int(np.prod(images.shape[1:]))])
            if self.weights is None:
                with tf.name_scope("linear"):
                    self.weights = tf.Variable(tf.zeros([x.shape[1], self.num_classes]), name="w")
            return tf.matmul(x, self.weights)

    parts = build_parts(settings(compose(*TINY, "hardware=cpu2")), tiny_digits)
    parts.model = shared_model(Linear, 10, None, "fp32")
    tg = build_train_graph(parts, 50, 0, 0.99)
    with tg.graph.as_default():
        build_evals(parts, ["test", "validation"], 50, moving_average_getter(tg.ema))
    variables = tg.graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES)
    assert [(v.op.name, v.device.lower().replace("device:", "")) for v in variables] == [("linear/w", "/cpu:0")]
    assert made == ["fp32", "fp32"]  # the towers' and the evals' instances: the evals share one
    matmuls = [op for op in tg.graph.get_operations() if op.type == "MatMul" and "gradients" not in op.name]
    assert {op.name.split("/")[0] for op in matmuls} == {"tower_0", "tower_1", "eval_test", "eval_validation"}
    for op in matmuls:  # each reads the one variable; an eval, its moving average
        read = op.inputs[1].op.inputs[0].op.name
        assert read == ("linear/w/ExponentialMovingAverage" if op.name.startswith("eval") else "linear/w"), op.name
