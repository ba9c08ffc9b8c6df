"""The code's shape: no import cycles inside runner/ (every import read with ast, at the top of a module or inside a
function), a mode table that matches the schema, and no TensorFlow while any mode's config is composed."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from runner.config.schema import MODES
from tests.helpers import ROOT

PACKAGE = ROOT / "runner"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The runner modules that importing ``name`` runs: each imported module, its parent packages (Python runs
    their ``__init__`` first), and a submodule named by ``from package import submodule``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    found = set()
    for target in targets:
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a module that imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, name, known) for name, path in known.items()}


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_runner_has_no_import_cycles():
    graph = import_graph()
    assert "runner.config.schema" in graph["runner.config.checks"]  # the reader sees imports
    assert "runner.run.runs" in graph["runner.modes.train"]  # including those made inside a function
    assert _cycles(graph) == []


# Each folder of runner/ is a layer; a module imports only from its own layer or those below it. Parts of one rank
# (the models, trainers, optimizers and pipelines) import none of each other.
LAYERS = [{"cli"}, {"modes"}, {"sweeps"}, {"records"}, {"distributed"}, {"perf"}, {"run"}, {"engine"},
          {"models", "trainers", "optim", "pipelines"}, {"ops"}, {"datasets"}, {"config"}, {"core"}]
# python -m runner and its commands
ENTRY_POINTS = {"__init__", "__main__", "viewer", "report", "service"}


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "runner"


def _rank(layer: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if layer in names)


def test_nothing_but_the_entry_points_sits_flat_in_runner():
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat <= ENTRY_POINTS, f"modules outside a layer folder: {sorted(flat - ENTRY_POINTS)}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set().union(*LAYERS), "a folder of runner/ that is not in LAYERS, or a layer with no folder"


def test_every_import_points_down_the_layers():
    graph = import_graph()
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if _layer(a) not in ENTRY_POINTS and _layer(b) != "runner" and _layer(a) != _layer(b)
                    and _rank(_layer(b)) <= _rank(_layer(a)))
    assert not upward, "imports that point up (or across parts of one rank):\n" + "\n".join(upward)


def test_each_mode_is_one_module_with_one_entry_function():
    from runner.modes import MODES as TABLE

    assert sorted(TABLE) == sorted(MODES)
    modules = {f"runner.modes.{p.stem}" for p in (PACKAGE / "modes").glob("*.py") if p.stem != "__init__"}
    assert {entry.__module__ for entry in TABLE.values()} == modules  # every module of modes/ is a mode
    for mode, entry in TABLE.items():
        assert entry.__name__ == "run" and entry.__module__.startswith("runner.modes."), (mode, entry)


COMPOSED = [[f"mode={mode}"] for mode in MODES] + [["hardware=local_cluster"], ["hardware=cluster"],
                                                  ["mode=bench", "dataset=shapes"]]


def test_composing_any_mode_loads_no_tensorflow():
    """What runs before a run starts (the app's imports, composing, the schemas and the checks) loads no
    TensorFlow, for every mode; nor does Hydra's own composition with the hydra node's resolvers (--cfg all)."""
    code = ("import sys; from runner.cli.app import checked; from runner.config.hydra import compose_config\n"
            f"for args in {COMPOSED!r}:\n"
            "    cfg = compose_config(args)\n"
            "    checked(cfg, '.', []) if cfg.mode != 'eval' and cfg.hardware.name != 'cluster' else None\n"
            "print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    for args in (["mode=train", "hardware=local_cluster"], ["mode=eval"]):
        hydra = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "--cfg", "all", *args], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        assert hydra.returncode == 0, hydra.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in hydra.stderr.splitlines() if "|" in line}
        assert "runner.cli.app" in imported and "tensorflow" not in imported
        # Nor numpy, nor a launcher's or sweeper's plug-in module: Hydra's own plug-ins alone (runner.config.plugins),
        # runner's experiments:// config source and installed packages' options on the search path
        own = {"hydra_plugins", "hydra_plugins.runner_experiments", "hydra_plugins.runner_parts"}
        assert not {m for m in imported - own
                    if m.split(".")[0] in ("numpy", "joblib", "ray", "optuna", "hydra_plugins")}


def test_showing_a_config_that_chooses_a_plug_in_launcher_loads_it(tmp_path):
    """--cfg with a launcher or sweeper of an installed plug-in (on the command line, or in an experiment) composes
    as with every plug-in loaded: the same lines."""
    proc = subprocess.run([sys.executable, "-m", "runner", "--cfg", "hydra", "hydra/launcher=joblib",
                           "hydra/sweeper=optuna"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher" in proc.stdout
    assert "hydra_plugins.runner_sweepers.optuna.OptunaSweeper" in proc.stdout


# ------------------------------------------------------------------------------- names in the words
DOTTED = re.compile(r"(?<![\w./$-])runner(?:\.[A-Za-z_]\w*)+")
# a run dir's file; the resolvers; the entry-point group of packages of parts
NOT_CODE = {"runner.log", "runner.subdir", "runner.sweep_key", "runner.cwd", "runner.parts"}


def _defined(path: Path) -> dict[str, set[str]]:
    """A module's top-level names, each with the names its class body defines (methods, attributes)."""
    names: dict[str, set[str]] = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = ast.walk(node)
            names[node.name] = {n.name for n in inner if isinstance(n, (ast.FunctionDef, ast.ClassDef))} | {
                t.id for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in getattr(n, "targets", [getattr(n, "target", None)]) if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in getattr(node, "targets", [getattr(node, "target", None)]):
                names.update({t.id: set() for t in ast.walk(target) if isinstance(t, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update({(a.asname or a.name).split(".")[0]: set() for a in node.names})
    return names


def _resolves(dotted: str, modules: dict[str, Path]) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if module in modules:
            rest = parts[cut:]
            if not rest:
                return True
            names = _defined(modules[module])
            return rest[0] in names and (len(rest) == 1 or (len(rest) == 2 and rest[1] in names[rest[0]]))
    return False


def test_every_runner_name_in_the_code_the_tests_and_the_docs_resolves():
    modules = _modules()
    assert not _resolves("runner" + ".hparams", modules) and not _resolves("runner.engine.training" + ".nope", modules)
    texts = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
             ROOT / "Makefile", *(ROOT / "conf").rglob("*.yaml")]
    stale = sorted({f"{path.relative_to(ROOT)}: {name}" for path in texts for name in DOTTED.findall(path.read_text())
                    if name.rstrip(".") not in NOT_CODE and not _resolves(name.rstrip("."), modules)})
    assert not stale, "names of runner's code that are not there:\n" + "\n".join(stale)
