"""The example's tests reuse the client's fixtures (real ``redkit serve`` and redis-server
processes): clients/python/tests/conftest.py, loaded under another module name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # app.py and worker.py

_spec = importlib.util.spec_from_file_location(
    "redkit_test_fixtures",
    HERE.parents[2] / "clients" / "python" / "tests" / "conftest.py",
)
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
sys.modules["redkit_test_fixtures"] = fixtures
_spec.loader.exec_module(fixtures)

cluster = fixtures.cluster
embedded = fixtures.embedded
shared_redis = fixtures.shared_redis
on_redis = fixtures.on_redis
server = fixtures.server
name = fixtures.name
