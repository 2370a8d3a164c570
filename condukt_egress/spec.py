"""``SessionSpec``: one session as the stack config describes it, and its stack name.

:class:`SessionSpec` has exactly the options of the stack config the shared
program reads (``Pulumi.yaml``): the :class:`~condukt_egress.args.SessionOptions`
fields, declared once there, and ``workspace_image``. The stack program,
the Automation API and ``render`` all build one, so a session means the same
thing from ``pulumi up``, a Python service and the command line. Pure: no
Pulumi import.

Example:
    >>> spec = SessionSpec("run-42", namespace="agents",
    ...                    policy={"rules": [{"allow": ["api.github.com"]}]})
    >>> spec.program_config()["namespace"], spec.args.namespace
    ('agents', 'agents')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from condukt_egress.args import SandboxEgressArgs, SessionOptions, validate_image
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE
from condukt_egress.naming import session_names
from condukt_egress.options import Option, option, options_of

__all__ = [
    "ARGS_OPTIONS",
    "CONFIG_KEYS",
    "SESSION_OPTIONS",
    "STACK_PREFIX",
    "SessionSpec",
    "stack_name",
]

STACK_PREFIX: Final = "session-"
"""Every session stack's name starts with this; :func:`stack_name` adds the rest."""


def stack_name(session_id: str) -> str:
    """The stack name of a session: ``session-<readable prefix>-<hash of the full id>``.

    Valid for any id accepted by :func:`~condukt_egress.naming.validate_session_id`
    (letters, digits and ``-`` only, at most 49 characters) and distinct for
    distinct ids, because it embeds :attr:`SessionNames.base`.

    Raises:
        ConfigError: The id is empty, blank, too long or not a string.
    """
    return f"{STACK_PREFIX}{session_names(session_id).base}"


@dataclass(frozen=True)
class SessionSpec(SessionOptions):
    """One session, with the options of the stack config (see ``Pulumi.yaml``).

    Validated when constructed, so bad input fails before any stack exists;
    the fields hold the validated values (an :class:`EgressPolicy`, tuples,
    canonical CIDRs). Every field is a stack config key in camelCase and a
    ``render`` flag in kebab-case (see :data:`SESSION_OPTIONS`).

    Attributes:
        session_id: The agent platform's id (config ``sessionId``).
        workspace_image: Image of the untrusted workspace container (``workspaceImage``).

    The other attributes are those of :class:`SandboxEgressArgs` of the same
    name. Its options that are not stack config (ports, ids, resources,
    capabilities) are not here; use the component for those.
    """

    workspace_image: str = field(
        default=DEFAULT_WORKSPACE_IMAGE,
        metadata=option(
            "Image of the untrusted workspace container.", example="<image>", metavar="IMG"
        ),
    )

    def __post_init__(self) -> None:
        validate_image("workspace_image", self.workspace_image, DEFAULT_WORKSPACE_IMAGE)
        args = self.args
        for name in ARGS_OPTIONS:
            object.__setattr__(self, name, getattr(args, name))

    @cached_property
    def args(self) -> SandboxEgressArgs:
        """The session's validated :class:`SandboxEgressArgs`, as the program builds them."""
        return SandboxEgressArgs(**{name: getattr(self, name) for name in ARGS_OPTIONS})

    @property
    def stack_name(self) -> str:
        """This session's stack name, see :func:`stack_name`."""
        return stack_name(self.session_id)

    def program_config(self) -> dict[str, str]:
        """The program's stack config as text, keyed like ``Pulumi.yaml`` (no namespace).

        Every key of :data:`CONFIG_KEYS` is set, so a stack never keeps a stale
        value from an earlier ``up``. Objects and lists are JSON text; no
        NodeLocal DNSCache is ``""``, the ``Pulumi.yaml`` default.
        """
        return {o.config: o.to_config(getattr(self, o.name)) for o in SESSION_OPTIONS}


SESSION_OPTIONS: Final[tuple[Option, ...]] = options_of(SessionSpec)
"""Every stack config option, in ``Pulumi.yaml`` order: the one list the surfaces read."""

ARGS_OPTIONS: Final = tuple(f.name for f in dataclasses.fields(SessionOptions))
"""The options that are :class:`SandboxEgressArgs` fields (all but ``workspace_image``)."""

CONFIG_KEYS: Final = tuple(o.config for o in SESSION_OPTIONS)
"""Every stack config key the program reads, as declared in ``Pulumi.yaml``."""
