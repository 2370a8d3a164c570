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
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from functools import cached_property
from typing import Any, Final

from condukt_egress.args import SandboxEgressArgs, SessionOptions, validate_image
from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.manifests import DEFAULT_WORKSPACE_IMAGE
from condukt_egress.naming import session_names
from condukt_egress.options import Option, camel, document, option, options_of

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

    def to_config(self) -> dict[str, Any]:
        """The session as a stack config document: ``Pulumi.yaml``'s keys, JSON values.

        Lists and objects are values, not JSON text (``policy`` is an
        object), so the result is an HTTP body or a ``Pulumi.<stack>.yaml``
        ``config:`` block as it stands. :meth:`from_config` reads it back.
        """
        return {o.config: _document_value(o, getattr(self, o.name)) for o in SESSION_OPTIONS}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SessionSpec:
        """The session a stack config document describes (camelCase keys, as ``Pulumi.yaml``).

        Takes what :meth:`to_config` gives, or the text forms of
        :meth:`program_config` (``"true"``, ``"72"``, JSON text for lists and
        objects). Unset keys take their defaults; ``sessionId`` is required.

        Raises:
            ConfigError: An unknown key, a value of the wrong type or an
                invalid value; the field is the camelCase key (and its path).
            PolicyError: The ``policy`` object is invalid; the field is its path.
        """
        if not isinstance(config, Mapping):
            raise ConfigError(
                "config",
                f"must be an object of stack config keys (sessionId, namespace, ...), "
                f"got {type(config).__name__}",
            )
        by_key = {o.config: o for o in SESSION_OPTIONS}
        for key in config:
            if key not in by_key:
                raise ConfigError(str(key), _unknown_key(str(key), by_key))
        if config.get("sessionId") in (None, ""):
            raise ConfigError("sessionId", "is required: the agent platform's id of the session")
        values = {
            by_key[key].name: _from_document(by_key[key], value) for key, value in config.items()
        }
        try:
            return cls(**{name: v for name, v in values.items() if v is not None})
        except PolicyError:
            raise
        except ConfigError as exc:
            opt = _BY_NAME.get(exc.root)
            raise exc if opt is None else exc.renamed(opt.config) from None


SESSION_OPTIONS: Final[tuple[Option, ...]] = options_of(SessionSpec)
"""Every stack config option, in ``Pulumi.yaml`` order: the one list the surfaces read."""

_BY_NAME: Final = {o.name: o for o in SESSION_OPTIONS}
_TEXT_BOOLEANS: Final = {"true": True, "false": False}


def _document_value(opt: Option, value: Any) -> Any:
    """One option's value in a stack config document (``None`` strings as ``""``)."""
    if opt.kind in ("array", "object"):
        return document(value)
    if opt.kind == "string":
        return "" if value is None else str(value)
    return value


def _unknown_key(key: str, by_key: Mapping[str, Option]) -> str:
    """Why ``key`` is refused, with the key meant when it is close to one."""
    camel_key = camel(key)
    close = [camel_key] if camel_key in by_key else get_close_matches(key, by_key, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"is not a session config key; {hint}the keys are {', '.join(by_key)}"


def _from_document(opt: Option, value: Any) -> Any:
    """One option's value read from a config document; None means its default."""
    wrong = ConfigError(opt.config, f"must be {opt.what}, got {value!r} (e.g. {opt.example})")
    if value is None:
        return None
    if opt.kind == "string":
        if not isinstance(value, str):
            raise wrong
        return None if value == "" and opt.default is None else value
    if opt.kind == "boolean":
        value = _TEXT_BOOLEANS.get(value, value) if isinstance(value, str) else value
        if not isinstance(value, bool):
            raise wrong
        return value
    if opt.kind == "integer":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise wrong from None
    if (opt.kind == "object" and not isinstance(value, Mapping)) or (
        opt.kind == "array" and not isinstance(value, list)
    ):
        raise wrong
    return value


ARGS_OPTIONS: Final = tuple(f.name for f in dataclasses.fields(SessionOptions))
"""The options that are :class:`SandboxEgressArgs` fields (all but ``workspace_image``)."""

CONFIG_KEYS: Final = tuple(o.config for o in SESSION_OPTIONS)
"""Every stack config key the program reads, as declared in ``Pulumi.yaml``."""
