"""Parts from installed packages (runner.config.packages): examples/keras_parts installed with pip, its tf_keras model
trained on one device and on towers sharing one set of variables, and the packages that cannot join.

Each package is installed with ``pip install --target`` into a folder of this test put on PYTHONPATH: a real
installation (its metadata and entry points as pip writes them), seen by these tests' commands alone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY, run_cli

EXAMPLE = ROOT / "examples" / "keras_parts"
DIST = "keras-parts 0.1.0"


def pip_install(source: Path, site: Path) -> None:
    """``pip install`` of the project in ``source`` into ``site`` (a copy built, so the source tree stays clean)."""
    build = site.parent / f"build-{source.name}"
    shutil.copytree(source, build, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(build)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def on_path(*sites: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([*map(str, sites), *filter(None, [os.environ.get("PYTHONPATH")])])}


def mlp_parameters(pixels: int, hidden: list[int], classes: int) -> int:
    sizes = [pixels, *hidden, classes]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """examples/keras_parts installed."""
    site = tmp_path_factory.mktemp("packages") / "site"
    pip_install(EXAMPLE, site)
    return site


def package(root: Path, name: str, init: str, files: dict[str, str] | None = None) -> Path:
    """A small package of parts, ``name``, with its entry point: ``init`` is its __init__.py."""
    project = root / name
    (project / name / "conf").mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name.replace('_', '-')}"
        version = "1.0"
        [project.entry-points."runner.parts"]
        {name} = "{name}:PARTS"
        [tool.setuptools]
        packages = ["{name}"]
        [tool.setuptools.package-data]
        {name} = ["conf/**/*.yaml"]
        """))
    (project / name / "__init__.py").write_text(textwrap.dedent(init))
    for path, text in (files or {}).items():
        (project / name / path).parent.mkdir(parents=True, exist_ok=True)
        (project / name / path).write_text(textwrap.dedent(text))
    return project


def test_the_package_is_found_listed_and_composed(site, tmp_path):
    env = on_path(site)
    shown = run_cli("--help", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    groups = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert f"keras_mlp ({DIST})" in groups["model"] and f"rmsprop ({DIST})" in groups["optimizer"]
    composed = run_cli("model=keras_mlp", "optimizer=rmsprop", "model.hidden=[64]", "--cfg", "job", cwd=tmp_path,
                       env=env)
    assert composed.returncode == 0, composed.stderr
    assert "name: keras_mlp\n  hidden:\n  - 64\n  dropout: 0.0" in composed.stdout
    assert "name: rmsprop\n  lr: 0.001\n  decay: 0.9" in composed.stdout
    # validated like runner's own: the schema's types and keys
    for override, said in [("model.hidden=[a]", "model.hidden"), ("model.units=3", "model.units is not a known key"),
                           ("optimizer.decay=fast", "optimizer.decay")]:
        bad = run_cli("model=keras_mlp", "optimizer=rmsprop", override, "--cfg", "job", cwd=tmp_path, env=env)
        assert bad.returncode == 2 and said in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    # without the package, the option is unknown, as any other
    gone = run_cli("model=keras_mlp", "--cfg", "job", cwd=tmp_path)
    assert gone.returncode == 2 and "model=keras_mlp is not an option of model" in gone.stderr


def test_the_tf_keras_model_trains_on_towers_with_one_set_of_variables(site, tmp_path, tiny_digits):
    run_dir = tmp_path / "run"
    proc = run_cli("model=keras_mlp", "optimizer=rmsprop", "optimizer.lr=0.01", "hardware=cpu2",
                   "model.weight_decay=0.0001", "max_steps=60", "log_every=20", "moving_average_decay=0.99",
                   f"run_dir={run_dir}", *TINY,
                   cwd=tmp_path, env=on_path(site))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "keras_mlp" and summary["trainer"] == "towers" and len(summary["devices"]) == 2
    # one set: the towers' parameters counted once
    assert summary["trainable_parameters"] == mlp_parameters(28 * 28, [128, 32], 10)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.3  # it learns: 2.25 -> 1.53 here
    assert summary["final_precision"]["test"] > 0.3  # of 10 classes
    import tensorflow as tf

    names = set(tf.train.load_checkpoint(str(run_dir / "checkpoints")).get_variable_to_shape_map())
    weights = {n for n in names if n.endswith(("kernel", "bias"))}
    assert weights == {f"keras_mlp/{layer}/{kind}" for layer in ("dense", "dense_1", "dense_2")
                       for kind in ("kernel", "bias")}  # named as outside any tower, each once
    assert {f"{n}/ExponentialMovingAverage" for n in weights} <= names
    # each tower's loss has the model's weight decay (Keras's regularization losses); tower 0's is summarized
    assert "tower_0/keras_mlp/dense/kernel/Regularizer/mul/avg" in names
    # the package uninstalled: evaluating the run says what it needs
    gone = run_cli("mode=eval", f"run_dir={run_dir}", cwd=tmp_path)
    assert gone.returncode == 2 and (gone.stdout + gone.stderr).strip().splitlines()[-1] == (
        "error: model=keras_mlp is an option of neither runner nor an installed package: a run made with a package's "
        "parts needs that package installed (docs/packages.md)")


@pytest.mark.slow
def test_mode_eval_of_the_keras_model_gives_what_training_gave(site, tmp_path, tiny_digits):
    """mode=eval (its own graph, the moving averages restored into the variables) gives the precision training's
    last eval gave (a second instance reading the averages through the getter)."""
    run_dir = tmp_path / "run"
    proc = run_cli("model=keras_mlp", "model.batch_norm=true", "optimizer.lr=0.05", "hardware=cpu2", "max_steps=60",
                   "moving_average_decay=0.99", f"run_dir={run_dir}", *TINY, cwd=tmp_path, env=on_path(site))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    evaluated = run_cli("mode=eval", f"run_dir={run_dir}", cwd=tmp_path, env=on_path(site))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads((run_dir / "eval.json").read_text())["results"]
    assert {split: r["precision"] for split, r in results.items()} == summary["final_precision"]


BROKEN_IMPORT = """\
    import no_such_module_here
    """

SAME_NAME = """\
    from dataclasses import dataclass
    from omegaconf import MISSING
    from runner.config.packages import Package

    @dataclass
    class Config:
        name: str = MISSING

    PARTS = Package(schemas={"model": {"%s": Config}})
    """


def test_packages_that_cannot_join_are_one_line_each(site, tmp_path):
    packages = tmp_path / "src"
    cases = [  # (package, what the line names)
        (package(packages, "broken_parts", BROKEN_IMPORT),
         ["the package broken-parts 1.0", "fails to import: ModuleNotFoundError: No module named "
          "'no_such_module_here'", "pip uninstall broken-parts"]),
        (package(packages, "rival_parts", SAME_NAME % "keras_mlp"),
         ["model 'keras_mlp' is registered by two packages: the package keras-parts 0.1.0 and rival-parts 1.0"]),
        (package(packages, "mine_parts", SAME_NAME % "mlp"),
         ["model 'mlp' is registered by two packages: runner itself and mine-parts 1.0"]),
        (package(packages, "odd_parts", "PARTS = 3\n"),
         ["the package odd-parts 1.0", "names a int, not a runner.config.packages.Package"]),
    ]
    for i, (project, said) in enumerate(cases):
        one = tmp_path / f"site-{project.name}"
        pip_install(project, one)
        for args in (["--cfg", "job"], ["max_steps=5"], ["--help"])[:3 if i == 0 else 1]:  # a run, --help: once
            proc = run_cli(*args, cwd=tmp_path, env=on_path(site, one))
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr[-2000:])
            assert all(part in lines[0] for part in said), lines[0]
            assert not (tmp_path / "outputs").exists()  # nothing started


@pytest.mark.slow
def test_a_module_of_a_package_that_fails_when_a_run_builds_its_parts(tmp_path, tiny_digits):
    project = package(tmp_path / "src", "late_parts", """\
        from runner.config.packages import Package

        PARTS = Package(modules=("late_parts.models",))  # no options: it would register a trainer, say
        """, {"models.py": "raise RuntimeError('the weights file is missing')\n"})
    site = tmp_path / "site"
    pip_install(project, site)
    proc = run_cli(*TINY, "max_steps=5", cwd=tmp_path, env=on_path(site))
    assert proc.returncode == 2, proc.stderr[-2000:]
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert said == [(
        "error: the package late-parts 1.0 (entry point runner.parts: late_parts = late_parts:PARTS): its module "
        "late_parts.models fails to import: RuntimeError: the weights file is missing")]


@pytest.mark.slow
def test_the_pages_commands_as_typed_in_an_empty_folder(site, tmp_path, data_root):
    """docs/packages.md's and the README's commands, as written, with the example installed."""
    from tests.test_readme import commands

    typed = commands("Parts from your own package")
    readme = (ROOT / "README.md").read_text().split("### Parts from your own package", 1)[1].split("\n#", 1)[0]
    assert typed[-1] in readme and "pip install ./examples/keras_parts" in readme
    assert typed == ["python -m runner --help", "python -m runner model=keras_mlp optimizer=rmsprop hardware=cpu2"]
    shown = run_cli("--help", cwd=tmp_path, env=on_path(site))
    assert f"keras_mlp ({DIST})" in shown.stdout
    proc = run_cli(*typed[-1].split()[3:], cwd=tmp_path, env=on_path(site), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary_file,) = (tmp_path / "outputs").glob("*/*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["steps"] == 2000 and summary["trainer"] == "towers" and summary["model"] == "keras_mlp"
    assert summary["config"]["optimizer"]["name"] == "rmsprop"
    assert summary["final_precision"]["test"] > 0.9  # the digits, 2,000 steps: 0.97 here


@pytest.mark.slow
def test_the_keras_model_on_towers_repeats_bit_for_bit(site, tmp_path, tiny_digits):
    """deterministic=true: two runs of one seed (dropout and batch norm included) equal at every step."""
    runs = []
    for name in ("a", "b", "other_seed"):
        proc = run_cli("model=keras_mlp", "model.dropout=0.2", "model.batch_norm=true", "hardware=cpu2",
                       "deterministic=true", "max_steps=40", "log_every=5", "eval_splits=[test]",
                       f"seed={1 if name == 'other_seed' else 0}", f"run_dir={tmp_path / name}", *TINY,
                       cwd=tmp_path, env=on_path(site))
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        runs.append(([line["loss"] for line in lines if "loss" in line],
                     json.loads((tmp_path / name / "summary.json").read_text())["final_precision"]))
    assert len(runs[0][0]) == 8 and runs[0] == runs[1]
    assert runs[2][0] != runs[0][0]  # the seed decides the weights and the dropout masks


@pytest.mark.slow
def test_a_package_of_a_trainer_is_chosen_by_name(tmp_path, tiny_digits):
    """A package with no options that registers a trainer: trainer=NAME is known with it, and unknown without."""
    project = package(tmp_path / "src", "clip_parts", """\
        from runner.config.packages import Package

        PARTS = Package(modules=("clip_parts.trainers",), trainers=("clipped",))
        """, {"trainers.py": """\
        import tensorflow as tf

        from runner.trainers import TRAINERS
        from runner.trainers.losses import total_loss


        @TRAINERS.register("clipped")
        def clipped(model, batches, optimizer, global_step, devices, variable_device):
            (batch,) = batches
            with tf.device(devices[0]):
                loss = total_loss(model(batch.images, training=True), batch.labels)
                grads = [(tf.clip_by_norm(g, 1.0), v) for g, v in optimizer.compute_gradients(loss)]
                return loss, grads, optimizer.apply_gradients(grads, global_step=global_step)
        """})
    site = tmp_path / "site"
    pip_install(project, site)
    run_dir = tmp_path / "run"
    proc = run_cli("trainer=clipped", *TINY, "max_steps=20", f"run_dir={run_dir}", cwd=tmp_path, env=on_path(site))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["trainer"] == "clipped"
    gone = run_cli("trainer=clipped", *TINY, "max_steps=20", cwd=tmp_path)
    said = gone.stdout + gone.stderr
    assert gone.returncode == 2 and "trainer='clipped' is not known; choose one of: auto, single, towers" in said
