"""Shared fixtures: every engine test runs on both engines, the reference and the fast one.

Hypothesis profiles: ``ci`` (the default) keeps `make test` quick; ``HYPOTHESIS_PROFILE=long make test``
runs many more random streams.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from engine.core import Engine
from engine.reference import ReferenceEngine

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ENGINE_CLASSES = [pytest.param(ReferenceEngine, id="reference"), pytest.param(Engine, id="fast")]


@pytest.fixture(params=ENGINE_CLASSES)
def engine_cls(request):
    """An engine class built as ``engine_cls(config)``."""
    return request.param


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each test's report of its phases as ``item.rep_<phase>``: fixtures see whether the test failed
    (the browser tests keep a screenshot then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
