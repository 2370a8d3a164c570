"""The shared corpus of real-world workloads, when it sits beside the checkout.

``../shared/k8s-corpus`` (or one level further up, from a worktree) holds
public manifests to run the injection over; it is never copied into the
repository, so a fresh clone has none and the tests that read it skip with
:data:`MISSING`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

_ROOT: Final = Path(__file__).resolve().parent.parent

CORPUS: Final = next(
    (
        p
        for p in (
            _ROOT.parent / "shared" / "k8s-corpus",
            _ROOT.parent.parent / "shared" / "k8s-corpus",
        )
        if p.is_dir()
    ),
    None,
)
"""The corpus directory, or ``None`` when there is none."""

needs_corpus: Final = pytest.mark.skipif(
    CORPUS is None, reason="no ../shared/k8s-corpus beside this checkout"
)
"""Skip a test, saying why, where the corpus is absent."""
