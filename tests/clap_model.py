"""A small model of how clap 4 (the sidecar's argument parser) reads argv.

Only the rules that matter for what we generate: long flags that take one
value (``#[arg(long)]`` on a ``String``/``u16``/``u32`` field, upstream
``src/proxy/mod.rs:24-60`` and ``src/netfilter.rs:27-41``). A value may be
attached (``--flag=value``: everything after the first ``=``, taken verbatim)
or be the next word; a next word that starts with ``-`` is read by clap as
another flag (``allow_hyphen_values`` is off on every upstream field), so
``--session-id -42`` is a usage error and the process exits.
"""

from __future__ import annotations

from collections.abc import Sequence

PROXY_FLAGS = frozenset(
    {"listen", "control-listen", "policy-file", "ca-cert-path", "ca-key-path", "session-id"}
)
"""``proxy``'s long flags (upstream src/proxy/mod.rs:28-59)."""
NETFILTER_FLAGS = frozenset({"proxy-port", "sidecar-uid", "iptables-bin"})
"""``netfilter-setup``'s long flags (upstream src/netfilter.rs:30-40)."""
REQUIRED_PROXY_FLAGS = frozenset({"ca-cert-path", "ca-key-path"})
"""Mandatory (no default) in ``proxy`` (upstream src/proxy/mod.rs:49-55)."""


class UsageError(Exception):
    """What clap reports before the process exits with status 2."""


def parse(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Parse ``[mode, *flags]`` as the sidecar's clap definition would."""
    mode, *rest = argv
    flags = {"proxy": PROXY_FLAGS, "netfilter-setup": NETFILTER_FLAGS}.get(mode)
    if flags is None:
        raise UsageError(f"unrecognized subcommand {mode!r}")
    values: dict[str, str] = {}
    words = iter(rest)
    for word in words:
        if not word.startswith("--"):
            raise UsageError(f"unexpected argument {word!r}")
        name, eq, value = word[2:].partition("=")
        if name not in flags:
            raise UsageError(f"unexpected argument '--{name}'")
        if not eq:
            value = next(words, "--")  # nothing left reads like a missing value
            if value.startswith("--"):
                raise UsageError(f"a value is required for '--{name}' but none was supplied")
            if value.startswith("-") and value != "-":
                # clap_lex reads "-42" as the short flags -4 -2 (lab, clap 4.6.0).
                raise UsageError(f"unexpected argument '{value[:2]}' found")
        if name in values:
            raise UsageError(f"the argument '--{name}' cannot be used multiple times")
        values[name] = value
    if mode == "proxy" and not set(values) >= REQUIRED_PROXY_FLAGS:
        raise UsageError("the following required arguments were not provided")
    return mode, values
