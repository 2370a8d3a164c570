"""The one error tree of condukt-egress.

Every error the library raises on purpose derives from :class:`EgressError`, so
a caller (or the CLI) can catch one type::

    EgressError
    ├── PolicyError        (also a ValueError) a policy document or rule is wrong
    ├── ConfigError        (also a ValueError) a session option or workload is wrong
    ├── ControlChannelError                    the sidecar's control port failed
    └── AutomationError                        a Pulumi Automation API step failed

Messages always name the field at fault and say how to fix it, because they
surface at ``pulumi preview`` time in front of a person.
"""

from __future__ import annotations

__all__ = [
    "AutomationError",
    "ConfigError",
    "ControlChannelError",
    "EgressError",
    "PolicyError",
]


class EgressError(Exception):
    """Base class of every error raised by condukt-egress."""


class PolicyError(EgressError, ValueError):
    """An egress policy (document, rule or host pattern) is invalid.

    Attributes:
        field: Dotted path of the offending field, e.g. ``rules[2].allow[0]``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ConfigError(EgressError, ValueError):
    """A session option, stack config value or workload spec is invalid.

    Attributes:
        field: The option or manifest path at fault, e.g. ``session_id``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ControlChannelError(EgressError):
    """The sidecar's control channel could not be reached or broke."""


class AutomationError(EgressError):
    """A Pulumi Automation API operation on a session stack failed."""
