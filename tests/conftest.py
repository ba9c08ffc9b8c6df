"""Shared fixtures: a tiny generated digits dataset per test session, a private data folder, a local HTTP server;
the helpers they and the tests share are in tests/helpers.py."""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

import runner  # noqa: F401  its process settings (oneDNN) before any test module loads TensorFlow
from runner.run.data import build_dataset
from tests.helpers import TINY, compose  # also: no CUDA probing without a GPU


@pytest.fixture(scope="session", autouse=True)
def data_root(tmp_path_factory) -> Path:
    """Every test (and subprocess) reads and writes data under a private folder, never the user's cache."""
    root = tmp_path_factory.mktemp("data")
    os.environ["RUNNER_DATA_DIR"] = str(root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return root


@pytest.fixture(scope="session")
def tiny_digits(data_root):
    """The default dataset at test size (1000 train, 200 validation, 300 test), generated once."""
    dataset = build_dataset(compose(*TINY))
    dataset.prepare()
    return dataset


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 (a free port); yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    httpd.shutdown()
    httpd.server_close()


def pytest_itemcollected(item):
    """The tests that share a module-scoped fixture (a trained run, a local cluster) go to one xdist worker
    (`make test` runs `--dist loadgroup`), so the fixture is built once instead of once per worker. (Marked as each
    test is collected: xdist reads the groups in its own collection hook.)"""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    shared = []
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if defs and defs[-1].scope == "module":
            param = getattr(item, "callspec", None) and item.callspec.params.get(name)
            shared.append(f"{item.module.__name__}.{name}" + (f"[{param}]" if param is not None else ""))
    if shared:
        item.add_marker(pytest.mark.xdist_group("+".join(sorted(shared))))
