"""Hypothesis strategies for user pod specs, shared by the inject and transform tests.

They generate what a user may legitimately declare (never a bypass), so every
example must come out injected, hardened and valid.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

names = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True).filter(
    lambda n: not n.startswith("condukt-egress")
)
"""Container and volume names that cannot clash with ours."""

env_vars = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True),
            "value": st.text(max_size=6),
        }
    ),
    max_size=3,
    unique_by=lambda e: str(e["name"]),
)

security_contexts = st.fixed_dictionaries(
    {},
    optional={
        "runAsUser": st.integers(1, 5000).filter(
            lambda u: u not in (1337, 1053)
        ),  # sidecar, resolver
        "readOnlyRootFilesystem": st.booleans(),
        "allowPrivilegeEscalation": st.just(False),
        "capabilities": st.fixed_dictionaries(
            {"drop": st.lists(st.sampled_from(["NET_RAW", "ALL", "MKNOD"]), unique=True)}
        ),
        "seccompProfile": st.just({"type": "RuntimeDefault"}),
    },
)

user_containers: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.fixed_dictionaries(
        {"name": names, "image": st.sampled_from(["python:3.13-slim", "node:22"]), "env": env_vars},
        optional={"securityContext": security_contexts},
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda c: str(c["name"]),
)

volumes = st.lists(
    st.builds(lambda n: {"name": n, "emptyDir": {}}, names),
    max_size=2,
    unique_by=lambda v: v["name"],
)

labels = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True),
    max_size=3,
)
