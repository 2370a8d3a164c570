"""Test-wide settings: Hypothesis profiles.

``dev`` (the default) keeps property tests quick while you work; ``ci`` (set
by ``.ci/run`` through ``HYPOTHESIS_PROFILE=ci``) runs ten times the
examples. Tests that want more than the profile's examples scale from
:func:`hypothesis.settings` rather than fixing a number, so both profiles
apply to every property test.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
