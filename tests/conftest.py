"""Test-wide settings: Hypothesis profiles, and the Automation API tests' fakes.

``dev`` (the default) keeps property tests quick while you work; ``ci`` (set
by ``.ci/run`` through ``HYPOTHESIS_PROFILE=ci``) runs ten times the
examples. Tests that want more than the profile's examples scale from
:func:`hypothesis.settings` rather than fixing a number, so both profiles
apply to every property test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from tests.test_automation import FakeCli

settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# The Automation API tests' shared fixtures (imported when first used: most
# test runs need neither the Pulumi SDK nor the session program).


@pytest.fixture
def fake(tmp_path: Path) -> FakeCli:
    """A scripted ``pulumi`` CLI in ``tmp_path`` (see ``tests.test_automation.FakeCli``)."""
    from tests.test_automation import make_fake  # noqa: PLC0415

    return make_fake(tmp_path)


@pytest.fixture(scope="session")
def exported() -> dict[str, Any]:
    """The stack outputs the session program exports for the "every option" spec."""
    from condukt_egress.program import session_program  # noqa: PLC0415
    from tests.pulumi_harness import run  # noqa: PLC0415
    from tests.test_automation import SPECS, manager_config  # noqa: PLC0415

    return run(session_program, config=manager_config(SPECS["every option"])).stack_outputs
