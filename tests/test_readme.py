"""The README's Quick start and the Sweeps page's commands as tests: each `python -m runner ...` line of their code
blocks, read from README.md and docs/sweeps.md as written, runs in an empty working directory with only what a user
adds to keep it short (`max_steps`, `eval_splits=[test]` and small data sizes), and does what the README says: a run
dir with a summary,
one sweep dir with a report of every job, an evaluation of the latest run, the composed config, the help.

When the README or the docs change, these tests follow them. The fast tier keeps the commands in FAST (the plain
run, the
sweep with the rerun that skips its finished jobs, mode=eval, --cfg job, --help); the rest are in the slow tier.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
from math import prod
from pathlib import Path

import pytest
import yaml

from tests.helpers import AS_USER, ROOT, compose, noise, one_complete_sweep, run_cli

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # the README and every docs page
SIZES = {"digits": ["dataset.num_train=1200", "dataset.num_test=300", "dataset.validation_size=200"],
         "shapes": ["dataset.num_train=500", "dataset.num_test=130"]}
SHORT = ["max_steps=10", "eval_splits=[test]"]
# Commands that fetch a public dataset: no network at test time (the download code is tested against a local HTTP
# server in tests/test_download.py).
DOWNLOADS = ("dataset=mnist", "dataset=cifar10", "experiment=mnist_fully_connected_feed")
FAST = ("python -m runner", "python -m runner -m batch_size=50,100", "python -m runner --cfg job",
        "python -m runner --help", "python -m runner mode=eval run_dir=outputs/2026-11-25/10-00-00",
        "python -m runner -m hydra/launcher=slurm --cfg hydra")


def _section(title: str) -> str:
    """A section of the README or of a docs page, by its title: a page's whole text (``# title``) or a ``## title``
    section up to the next one."""
    for page in PAGES:
        text = "\n" + page.read_text()
        if text.startswith(f"\n# {title}\n"):
            return text
        start = text.find(f"\n## {title}\n")
        if start >= 0:
            end = text.find("\n## ", start + 1)
            return text[start:end if end > 0 else None]
    raise AssertionError(f"no section or page titled {title!r} in README.md or docs/")


def commands(*titles: str) -> list[str]:
    """The `python -m runner` lines of the sections' bash blocks, without their comments."""
    found = []
    for title in titles:
        for block in re.findall(r"```bash\n(.*?)```", _section(title), re.S):
            for line in block.splitlines():
                line = line.split(" #", 1)[0].strip()
                if (line == "python -m runner" or line.startswith("python -m runner ")) and line not in found:
                    found.append(line)
    return found


ALL = commands("Quick start", "Sweeps and reports")


def _args(command: str) -> list[str]:
    return shlex.split(command)[3:]


def _experiment(args: list[str]) -> dict:
    name = next((a.split("=", 1)[1] for a in args if a.startswith("experiment=")), None)
    return yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text()) if name else {}


def _dataset(args: list[str]) -> str:
    """The dataset the command trains on (composed without its sweeps: a,b and range(5) alike)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = [a for a in args if not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(plain)
    return compose(*[a for a, o in zip(plain, parsed) if not o.is_sweep_override()]).dataset.name


def expected_jobs(args: list[str]) -> int:
    """The number of jobs Hydra's basic sweeper makes of the command's overrides and its experiment's
    ``hydra.sweeper.params``, counted by Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = ((_experiment(args).get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    overrides = [a for a in args if not a.startswith("-")] + [f"{k}={v}" for k, v in params.items()]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return prod(len(list(o.sweep_iterator())) if o.is_sweep_override() else 1 for o in parsed)


def _short(args: list[str]) -> list[str]:
    return [*args, *SHORT, *SIZES[_dataset(args)]]


def _check_run(cwd: Path, args: list[str], proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [p.parent for p in cwd.glob("outputs/*/*/summary.json")]
    assert len(runs) == 1, runs  # the default run_dir: outputs/DATE/TIME
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["final_precision"]["test"] > 0
    typed = yaml.safe_load((runs[0] / ".hydra" / "overrides.yaml").read_text())
    assert typed[:len(args)] == args  # the command's own overrides, as typed
    assert f"Results in {runs[0]}" in proc.stdout
    assert not noise(proc.stdout + proc.stderr)


def _block_commands(title: str) -> list[str]:
    """The `python -m runner` commands of a section's code blocks, continued lines joined."""
    found = []
    for block in re.findall(r"```\w*\n(.*?)```", _section(title), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("python -m runner "):
                found.append(line)
    return found


@pytest.mark.parametrize("command", _block_commands("Your own data"))
def test_an_own_data_command_reads_as_typed(command, tmp_path):
    """Each "Your own data" command, as written (``dataset.root=~/pets`` unquoted too), composes: Hydra reads it and
    the values are the ones typed, ``~`` being the home folder."""
    import os

    proc = run_cli(*shlex.split(command)[3:], "--cfg", "job", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = yaml.safe_load(proc.stdout)["dataset"]["root"]
    assert root.startswith(os.path.expanduser("~/")) and not list(tmp_path.iterdir())


def test_the_readme_shows_the_commands_the_fast_tier_runs():
    assert set(FAST) <= set(ALL), f"the README no longer shows {set(FAST) - set(ALL)}: update FAST"
    assert len(ALL) >= 10


FIRST_RUN = pytest.mark.xdist_group("readme-first-run")  # the plain run, and mode=eval of it: one worker


def _marks(command: str) -> list:
    if command not in FAST:
        return [pytest.mark.slow]
    return [FIRST_RUN] if command == "python -m runner" or "mode=eval" in command else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, object]:
    """The README's first command, as typed in an empty folder (short): the folder and the finished process."""
    cwd = tmp_path_factory.mktemp("first-run")
    return cwd, run_cli(*_short([]), cwd=cwd, timeout=900, unset=AS_USER)


@pytest.mark.parametrize("command", [
    pytest.param(c, marks=_marks(c), id=c.replace("python -m runner", "").strip() or "(no args)") for c in ALL])
def test_a_readme_command_as_typed(command, tmp_path, request):
    args = _args(command)
    if any(a in DOWNLOADS for a in args):
        pytest.skip("fetches a public dataset; tests have no network (downloads: tests/test_download.py)")
    if args[:1] == ["--help"] or "--cfg" in args:
        proc = run_cli(*args, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0 and not list(tmp_path.iterdir()), proc.stderr  # prints, writes nothing
        shown = {"--help": "Config groups (GROUP=OPTION):", "job": "batch_size: 100", "hydra": "launcher:"}
        assert shown[args[-1]] in proc.stdout and "Traceback" not in proc.stderr
        return
    if "mode=eval" in args:  # of the latest run, which the README's first command makes (a copy of its folder)
        first, made = request.getfixturevalue("first_run")
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
        shutil.copytree(first / "outputs", tmp_path / "outputs")
        latest = next(tmp_path.glob("outputs/*/*/checkpoints")).parent.relative_to(tmp_path)
        args = [f"run_dir={latest}" if a.startswith("run_dir=") else a for a in args]
        proc = run_cli(*args, "eval_splits=[test]", cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert re.search(r"Num examples: 300  Num correct: \d+  Precision @ 1: 0\.\d{4}", proc.stdout)
        return
    if not args:
        first, made = request.getfixturevalue("first_run")
        _check_run(first, args, made)
        return
    if "experiment=optuna_lr" in args or "hydra/sweeper=optuna" in args:  # a search: 3 short trials, then again
        short = [*args, "max_steps=20", "hydra.sweeper.n_trials=3", *SIZES[_dataset(args)]]
        sweep = one_complete_sweep(tmp_path, 3, run_cli(*short, cwd=tmp_path, timeout=900, unset=AS_USER))
        assert "## Search" in (sweep / "report.md").read_text()
        rerun = run_cli(*short, cwd=tmp_path, timeout=900)
        assert rerun.returncode == 0 and "has its 3 trials (3 complete): nothing to run" in rerun.stdout
        return
    proc = run_cli(*_short(args), cwd=tmp_path, timeout=900, unset=AS_USER)
    if "-m" not in args:
        _check_run(tmp_path, args, proc)
        return
    sweep = one_complete_sweep(tmp_path, expected_jobs(args), proc)
    if any(a.startswith("seed=range(") for a in args):  # repeats: one group per setting, each against the best
        written = json.loads((sweep / "report.json").read_text())
        repeats = expected_jobs(args) // len(written["groups"])
        assert repeats > 1 and all(g["completed"] == repeats for g in written["groups"]), written["groups"]
        assert len(written["comparisons"]) >= len(written["groups"]) - 1
        text = (sweep / "report.md").read_text()
        assert "## Groups: jobs that differ only in seed" in text and f"(n={repeats} each, paired t-test, p=" in text
    rerun = run_cli(*_short(args), cwd=tmp_path, timeout=900)  # the same command finds the same dir
    assert one_complete_sweep(tmp_path, expected_jobs(args), rerun) == sweep
    assert rerun.stdout.count("finished in an earlier run of this sweep: skipped") == expected_jobs(args)


def _every_command() -> list[tuple[str, str, str]]:
    """(page, command, the error it shows or "") for every `python -m runner` line of every code block of the README
    and the docs pages."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```\w*\n(.*?)```", page.read_text(), re.S):
            lines = block.replace("\\\n", " ").splitlines()
            for line, after in zip(lines, [*lines[1:], ""]):
                line = line.split(" #", 1)[0].strip().removeprefix("$ ")
                if line == "python -m runner" or line.startswith("python -m runner "):
                    found.append((page.name, line, after[len("error: "):] if after.startswith("error: ") else ""))
    return found


def _first_job(args: list[str]) -> list[str]:
    """The overrides of a command's run, or of its sweep's first job; Hydra's own settings (hydra/..., hydra.*) and
    the flags left out; DIR stands for a folder the reader picks."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from runner.cli.app import home_expanded

    parse = OverridesParser.create().parse_override
    out = []
    for arg in home_expanded(args):
        if arg.startswith("-") or arg.lstrip("+~").startswith("hydra") or "=" not in arg:
            continue
        override = parse(arg)
        if override.is_interval_sweep():
            continue  # a search's interval: the key keeps its configured value
        if override.is_sweep_override():
            arg = f"{arg.split('=', 1)[0]}={next(override.sweep_string_iterator())}"
        out.append(arg.replace("=DIR", "=/tmp/a-folder"))
    return out


@pytest.mark.parametrize("page,command,error", _every_command(), ids=lambda v: v if "python" in v else None)
def test_every_command_of_the_readme_and_the_docs_composes(page, command, error):
    """Each command a page shows is a config Hydra composes on the schemas and the checks pass, or it fails with the
    error the page shows (a key renamed or an option removed fails here, on the page that still shows it)."""
    from runner.config.checks import check_config
    from runner.core.errors import ConfigError

    args = _first_job(shlex.split(command)[3:])
    if any(a.startswith("experiment=") and not (ROOT / "experiments" / f"{a[11:]}.yaml").exists() for a in args):
        pytest.skip("an experiment the page's previous command writes (mode=tune)")
    if any(list(ROOT.glob(f"examples/*/*/conf/{a.replace('=', '/', 1)}.yaml")) for a in args if "=" in a):
        pytest.skip("an option of an example package (examples/): tests/test_packages.py runs it installed")
    if error:
        with pytest.raises(ConfigError) as raised:
            check_config(compose(*args))
        assert str(raised.value) == error
        return
    check_config(compose(*args))
