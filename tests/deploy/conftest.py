from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.helpers import VALUES_CASES


@pytest.fixture(params=sorted(VALUES_CASES), ids=sorted(VALUES_CASES))
def values_case(request) -> tuple[str, tuple[Path, ...]]:
    """(name, values files) for the chart's defaults and each example."""
    return request.param, VALUES_CASES[request.param]
