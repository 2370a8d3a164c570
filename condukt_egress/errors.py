"""The one error tree of condukt-egress.

Every error the library raises on purpose derives from :class:`EgressError`, so
a caller (or the CLI) can catch one type. The whole tree, with the module
each class is imported from (``errors`` unless said; a test walks the
subclasses against this drawing)::

    EgressError
    ├── FieldError                       a value at a named field is wrong
    │   ├── PolicyError   (a ValueError) a policy document or rule is wrong
    │   │   └── StackPolicyError         [program] the policy stack config value (a RunError)
    │   └── ConfigError   (a ValueError) a session option or workload is wrong
    │       └── StackConfigError         [program] a stack config value (a RunError)
    ├── ControlChannelError              the sidecar's control port failed
    │   └── MalformedFrameError          [events] a line is not a frame the contract allows
    ├── AutomationError                  a Pulumi Automation API step failed
    │   ├── PulumiCliError               [automation] the pulumi CLI is missing or too old
    │   ├── PassphraseRequiredError      [automation] no passphrase for the secrets provider
    │   └── SessionError                 [automation] one session's stack; names both
    │       ├── SessionNotFoundError     [automation] no stack holds the session
    │       ├── SessionBusyError         [automation] another operation on it is running
    │       └── SessionOperationError    [automation] up, preview, refresh or destroy failed
    └── ResolvedInputError               [component] an Input resolved to a bad value (a RunError)

The classes marked with a module live next to the code that raises them. A
``RunError`` is ``pulumi.RunError``, which ``pulumi up`` prints as one line,
without a traceback.

Messages always name the field at fault and say how to fix it, because they
surface at ``pulumi preview`` time in front of a person. A :class:`FieldError`
keeps the two apart (``field`` and ``message``) and builds its text in
``__str__``; code that re-labels an error (a ``SandboxEgressArgs`` field as a
stack config key or a ``render`` flag, a pod-spec path inside a workload)
uses :meth:`FieldError.under` and :meth:`FieldError.renamed`, never the text.

Example:
    >>> error = ConfigError("unproxied_egress.ports", "must be a port number")
    >>> str(error.renamed("--unproxied-egress"))
    '--unproxied-egress.ports: must be a port number'
    >>> str(PolicyError("allow[0]", "bad pattern").under("rules[2]"))
    'rules[2].allow[0]: bad pattern'
"""

from __future__ import annotations

import re
from typing import Final, Self

__all__ = [
    "AutomationError",
    "ConfigError",
    "ControlChannelError",
    "EgressError",
    "FieldError",
    "PolicyError",
]

_ROOT: Final = re.compile(r"[^.\[\s]+")
"""The first segment of a field path: ``unproxied_egress`` in ``unproxied_egress.ports``."""


class EgressError(Exception):
    """Base class of every error raised by condukt-egress."""


class FieldError(EgressError, ValueError):
    """A value at a named field is invalid; the text is ``"<field>: <message>"``.

    Attributes:
        field: Path of the offending field, e.g. ``rules[2].allow[0]`` or
            ``Deployment 'agent' spec.template.spec.hostNetwork``.
        message: What is wrong and how to fix it, without the field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def __reduce__(self) -> tuple[type[Self], tuple[str, str]]:
        return type(self), (self.field, self.message)

    @property
    def root(self) -> str:
        """The first segment of :attr:`field`: the option, e.g. ``unproxied_egress``."""
        match = _ROOT.match(self.field)
        return match.group() if match else ""

    def under(self, prefix: str, sep: str = ".") -> Self:
        """The same error with its field placed under ``prefix`` (joined by ``sep``).

        An index (``[0]...``) joins without a separator: ``rules[2]`` +
        ``[0]`` is ``rules[2][0]``.
        """
        if not self.field:
            return self._with(prefix)
        joiner = "" if sep == "." and self.field.startswith("[") else sep
        return self._with(f"{prefix}{joiner}{self.field}")

    def renamed(self, field: str) -> Self:
        """The same error with the first segment of its field replaced by ``field``.

        ``unproxied_egress.ports`` renamed ``config unproxiedEgress`` is
        ``config unproxiedEgress.ports``: the option keeps its sub-path.
        """
        return self._with(field + self.field[len(self.root) :])

    def _with(self, field: str) -> Self:
        error = type(self)(field, self.message)
        error.__cause__ = self.__cause__
        return error


class PolicyError(FieldError):
    """An egress policy (document, rule or host pattern) is invalid.

    Attributes:
        field: Dotted path of the offending field, e.g. ``rules[2].allow[0]``.
        message: What is wrong and how to fix it.
    """


class ConfigError(FieldError):
    """A session option, stack config value or workload spec is invalid.

    Attributes:
        field: The option or manifest path at fault, e.g. ``session_id``.
        message: What is wrong and how to fix it.
    """


class ControlChannelError(EgressError):
    """The sidecar's control channel could not be reached or broke."""


class AutomationError(EgressError):
    """A Pulumi Automation API operation on a session stack failed."""
