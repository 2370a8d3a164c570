"""The engine options of one session operation, validated once, for one runner.

``up``, ``preview``, ``refresh`` and ``destroy`` take the same few options
(URNs to replace or target, refresh first, parallelism, progress callbacks).
:class:`EngineOptions` declares them once, checks them before any CLI runs,
and names what an operation does not take; :meth:`SessionStacks._engine`
is the one place that hands them to the Pulumi SDK.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from pulumi.automation import EngineEvent

from condukt_egress.errors import ConfigError

__all__ = ["OPERATIONS", "EngineOptions", "OnEvent", "OnOutput", "Operation", "changes"]

Operation = Literal["up", "preview", "refresh", "destroy"]
"""An engine operation on a session stack."""

OnOutput = Callable[[str, str], None]
"""Progress callback: ``(session_id, line)`` for each line the engine prints."""

OnEvent = Callable[[str, EngineEvent], None]
"""Structured progress: ``(session_id, event)`` for each engine event
(:class:`pulumi.automation.EngineEvent`: resource pre/outputs/failed events,
diagnostics, the summary), for progress UIs."""

OPERATIONS: Final[Mapping[Operation, frozenset[str]]] = {
    "up": frozenset({"replace", "target", "refresh", "parallel"}),
    "preview": frozenset({"replace", "target", "refresh", "parallel"}),
    "refresh": frozenset({"target", "parallel"}),
    "destroy": frozenset({"target", "refresh", "parallel"}),
}
"""The engine options each operation takes (the callbacks go with every one)."""


def _urns(name: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of resource URNs, got {value!r}")
    for urn in value:
        if not isinstance(urn, str) or not urn.startswith("urn:pulumi:"):
            raise ConfigError(
                name,
                f"entries must be resource URNs ('urn:pulumi:<stack>::<project>::<type>::<name>', "
                f"e.g. ca_certificate_urn(session_id)), got {urn!r}",
            )
    return tuple(value)


@dataclass(frozen=True)
class EngineOptions:
    """What one engine operation is asked to do besides its default, checked when built.

    Attributes:
        replace: URNs to replace even if unchanged (``up``, ``preview``), e.g.
            ``[ca_certificate_urn(session_id)]`` to rotate the session CA.
        target: URNs to act on alone (and what they depend on is not touched).
        refresh: Refresh the state from the cluster first (not ``refresh``).
        parallel: Resource operations the engine runs at once.
        on_output: Progress lines of this call.
        on_event: Structured engine events of this call.
    """

    replace: Sequence[str] | None = None
    target: Sequence[str] | None = None
    refresh: bool | None = None
    parallel: int | None = None
    on_output: OnOutput | None = None
    on_event: OnEvent | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "replace", _urns("replace", self.replace))
        object.__setattr__(self, "target", _urns("target", self.target))
        if self.refresh is not None and not isinstance(self.refresh, bool):
            raise ConfigError("refresh", f"must be True, False or None, got {self.refresh!r}")
        parallel = self.parallel
        if parallel is not None and (
            isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1
        ):
            raise ConfigError("parallel", f"must be a whole number >= 1, got {parallel!r}")
        for name in ("on_output", "on_event"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(name, f"must be a callable or None, got {value!r}")

    def check(self, operation: Operation) -> EngineOptions:
        """These options, if ``operation`` takes them all.

        Raises:
            ConfigError: An option the operation does not take, named.
        """
        allowed = OPERATIONS[operation]
        for spec in fields(self):
            if spec.name.startswith("on_") or getattr(self, spec.name) is None:
                continue
            if spec.name not in allowed:
                raise ConfigError(
                    spec.name,
                    f"{operation} does not take it (it takes {', '.join(sorted(allowed))})",
                )
        return self

    def sdk_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the SDK's ``Stack.<operation>`` for the options set."""
        arguments: dict[str, Any] = {}
        for name in ("replace", "target"):
            value = getattr(self, name)
            if value is not None:
                arguments[name] = list(value)
        for name in ("refresh", "parallel"):
            value = getattr(self, name)
            if value is not None:
                arguments[name] = value
        return arguments


def changes(summary: Mapping[Any, int] | None) -> dict[str, int]:
    """An engine change summary keyed by operation name (``create``, ``same``...)."""
    return {str(getattr(op, "value", op)): int(n) for op, n in (summary or {}).items()}
