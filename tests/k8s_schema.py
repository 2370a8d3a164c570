"""Validate generated objects against the official Kubernetes JSON schemas.

Every supported minor version from 1.29 (native sidecars are on by default
from there) to the newest kubernetes-validate ships, in strict mode: unknown
fields are errors, so a typo in a builder cannot pass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
from kubernetes_validate import utils as kv_utils

MIN_VERSION = (1, 29)


@functools.cache
def versions() -> tuple[str, ...]:
    """Every schema version from 1.29 on, oldest first."""
    found = sorted(
        {v for v in kv_utils.all_versions() if tuple(map(int, v.split(".")[:2])) >= MIN_VERSION},
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert found, "kubernetes-validate ships no schema >= 1.29"
    return tuple(found)


def assert_valid(obj: Mapping[str, Any], versions_: tuple[str, ...] | None = None) -> None:
    """Raise AssertionError naming the version and the schema error if ``obj`` is invalid."""
    for version in versions_ or versions():
        try:
            kubernetes_validate.validate(dict(obj), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} invalid for "
                f"Kubernetes {version}: {exc.message} at {list(exc.path)}"
            ) from None
