"""One declaration per session option, read by every surface that shows it.

Each option is a dataclass field whose ``metadata`` carries an
:class:`Option` (as lightkube's dataclasses carry their wire names): its
stack config key (the field name in camelCase), its ``render`` flag (the name
in kebab-case, or one entry of a list), its help text, how a flag value or
a config value becomes a Python value, and its check (see
:mod:`condukt_egress.checks`), which :func:`check_fields` runs. The stack program's config reader,
:class:`~condukt_egress.spec.SessionSpec`'s stack config, the ``render``
flags, ``Pulumi.yaml`` and the docs' configuration reference are all derived
from, or tested against, these declarations, so a default or a name changes
in one place.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     dns_namespace: str = field(default="kube-system", metadata=option(
    ...         "Namespace of the cluster DNS pods.", metavar="NS"))
    >>> (opt,) = options_of(Demo)
    >>> opt.config, opt.flag, opt.example
    ('dnsNamespace', '--dns-namespace', 'kube-system')
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from condukt_egress.checks import Check, boolean, one_of
from condukt_egress.errors import ConfigError

__all__ = [
    "STACK_YAML",
    "Kind",
    "Option",
    "camel",
    "check_fields",
    "checked",
    "document",
    "expect_args",
    "option",
    "options_of",
    "switch",
]

Kind = Literal["string", "boolean", "integer", "array", "object"]
"""An option's stack config type, as ``Pulumi.yaml`` declares it (``object`` since CLI 3.187)."""

STACK_YAML: Final = "Pulumi.<stack>.yaml"

_KEY: Final = "condukt_egress.option"
_CHECK: Final = "condukt_egress.check"

_WHAT: Final[Mapping[Kind, str]] = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "array": "a list",
    "object": "an object",
}


def camel(name: str) -> str:
    """A Python field name in camelCase, as stack config and the provider schema spell it.

    >>> camel("dns_pod_labels")
    'dnsPodLabels'
    """
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


@dataclass(frozen=True)
class Option:
    """How one session option appears on every surface.

    Attributes:
        name: The Python field name (``SandboxEgressArgs``, ``SessionSpec``).
        kind: Its stack config type.
        items: The type of an array option's entries (``string`` or ``object``).
        help: One sentence for ``--help``, the configuration reference and docstrings.
        example: A valid value as typed in a fix hint; the default unless declared.
        what: What a value must be, for type errors (``"a list of IPv4 CIDRs"``).
        flag: The ``render`` flag; one entry per use for list and object options.
        short: A one-letter alias of the flag, if any.
        metavar: The flag's value placeholder.
        choices: The accepted values of a string option, if closed.
        parse: Turns one flag value (text) into the value, or (for a list or
            object option) into one entry, or a ``(key, value)`` pair.
        required: The option has no default.
        default: The field default (``None`` for a required option).
        doc_default: The default as the docs show it: a value in YAML flow
            form, or words (``required``, ``deny every host``) when
            :attr:`doc_literal` is false.
        doc_literal: Whether :attr:`doc_default` is a value (shown as code).
        check: Validates and normalises a value (see :mod:`condukt_egress.checks`).
    """

    name: str
    kind: Kind
    items: Kind | None
    help: str
    example: str
    what: str
    flag: str
    short: str | None
    metavar: str | None
    choices: tuple[str, ...]
    parse: Callable[[str], Any] | None
    required: bool
    default: Any
    doc_default: str
    doc_literal: bool
    check: Check | None = None

    @property
    def config(self) -> str:
        """The stack config key: the name in camelCase (``dns_pod_labels``: ``dnsPodLabels``)."""
        return camel(self.name)

    @property
    def project_type(self) -> dict[str, Any]:
        """The key's type in ``Pulumi.yaml``: ``{type: array, items: {type: object}}``.

        The CLI (3.187+) checks a stack's value against it before the program
        runs, so a list given where an object belongs fails at once.
        """
        if self.kind == "array":
            return {"type": "array", "items": {"type": self.items or "string"}}
        return {"type": self.kind}

    @property
    def repeatable(self) -> bool:
        """Whether the flag is given once per entry (list and object options)."""
        return self.kind in ("array", "object") and self.parse is not None and not self.is_file

    @property
    def is_file(self) -> bool:
        """Whether the flag names a file holding the whole (object) value."""
        return self.metavar == "FILE"

    @property
    def config_fix(self) -> str:
        """How to set the option with the Pulumi CLI or in the stack file."""
        if self.kind in ("array", "object"):
            return f"`condukt-egress:{self.config}: {self.example}` in {STACK_YAML}"
        return f"`pulumi config set {self.config} {self.example}`"

    def to_config(self, value: Any) -> str:
        """The stack config text of a (validated) value: JSON for lists and objects."""
        if self.kind == "boolean":
            return "true" if value else "false"
        if self.kind in ("array", "object"):
            return json.dumps(document(value), sort_keys=True)
        return "" if value is None else str(value)

    def from_flag(self, values: Sequence[str] | str | bool | int | None) -> Any:
        """The value of the flag as click collected it; None when not given."""
        if values is None or values == ():
            return None
        if not self.repeatable:
            return self.parse(values) if self.parse and isinstance(values, str) else values
        assert self.parse is not None  # noqa: S101 - repeatable implies a parser
        entries = [self.parse(text) for text in values]  # type: ignore[union-attr]
        if self.kind == "array":
            return entries
        out: dict[str, Any] = {}
        for key, value in entries:
            if key in out:
                raise ConfigError(self.name, f"{key!r} is given twice; give each key once")
            out[key] = value
        return out


def option(
    help: str,
    *,
    example: str | None = None,
    kind: Kind | None = None,
    items: Kind | None = None,
    what: str | None = None,
    flag: str | None = None,
    short: str | None = None,
    metavar: str | None = None,
    choices: Sequence[str] = (),
    parse: Callable[[str], Any] | None = None,
    doc_default: str | None = None,
    check: Check | None = None,
) -> dict[str, Any]:
    """Field metadata declaring a session option: ``field(default=..., metadata=option(...))``.

    ``kind`` defaults to what the field's default suggests (``bool`` boolean,
    ``int`` integer, a list or tuple array, a mapping object, else string);
    ``items`` (arrays only) to ``string``; ``flag`` to the name in kebab-case;
    ``check`` to :func:`~condukt_egress.checks.one_of` the ``choices``, if any;
    ``example`` to the default, as the docs show it (an option that is required,
    or empty by default, must give one).
    """
    if check is None and choices:
        check = one_of(choices)
    return {
        **checked(check),
        _KEY: {
            "help": help,
            "example": example,
            "kind": kind,
            "items": items,
            "what": what,
            "flag": flag,
            "short": short,
            "metavar": metavar,
            "choices": tuple(choices),
            "parse": parse,
            "doc_default": doc_default,
        },
    }


def switch(help: str, *, default: bool) -> Any:
    """A ``bool`` option field, declared in one call.

    Its check refuses anything but ``True`` and ``False`` (``"false"`` from a
    careless config is not false). E.g.
    ``allow_plain_http: bool = switch("Open TCP 80.", default=False)``.
    """
    return dataclasses.field(default=default, metadata=option(help, check=boolean))


def checked(check: Check | None) -> dict[str, Any]:
    """Field metadata carrying only a check, for a field that is not an option."""
    return {} if check is None else {_CHECK: check}


def check_fields(obj: Any, skip: Container[str] = ()) -> None:
    """Run every field's check on the frozen dataclass ``obj``, in field order.

    Each field that carries a check (:func:`option` or :func:`checked`) is
    set to the value its check returns; the first failing check raises its
    :class:`~condukt_egress.errors.ConfigError`, naming the field.

    Args:
        obj: A dataclass instance, typically in its ``__post_init__``.
        skip: Fields to leave unchecked (e.g. checked later, once resolved).
    """
    for f in dataclasses.fields(obj):
        check = f.metadata.get(_CHECK)
        if check is not None and f.name not in skip:
            object.__setattr__(obj, f.name, check(f.name, getattr(obj, f.name)))


def options_of(cls: type) -> tuple[Option, ...]:
    """The options declared on the dataclass ``cls``, in field order."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is None:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        example = spec["example"]
        if example is None:
            if required or document(default) in (None, "", [], {}):
                raise TypeError(
                    f"option {f.name} needs an example: its default shows no value; "
                    "give option(..., example=...)"
                )
            example = _doc(default)
        kind: Kind = spec["kind"] or _kind_of(default)
        out.append(
            Option(
                name=f.name,
                kind=kind,
                items=spec["items"] or ("string" if kind == "array" else None),
                help=spec["help"],
                example=example,
                what=spec["what"] or _WHAT[kind],
                flag=spec["flag"] or "--" + f.name.replace("_", "-"),
                short=spec["short"],
                metavar=spec["metavar"],
                choices=spec["choices"],
                parse=spec["parse"],
                required=required,
                default=default,
                doc_default=spec["doc_default"] or ("required" if required else _doc(default)),
                doc_literal=spec["doc_default"] is None and not required,
                check=f.metadata.get(_CHECK),
            )
        )
    return tuple(out)


def expect_args(args: object, cls: type) -> None:
    """Refuse a component's ``args`` that are not the options class ``cls`` (a dict, say).

    Raises:
        TypeError: Naming the type given and how to build a ``cls`` (its first option).
    """
    if not isinstance(args, cls):
        name = cls.__name__
        raise TypeError(
            f"args must be {name}, got {type(args).__name__}; "
            f"build it with {name}({options_of(cls)[0].name}=..., ...)"
        )


def document(value: Any) -> Any:
    """``value`` in document form: plain JSON types (objects with ``to_dict`` too)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, Mapping):
        return {str(k): document(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [document(v) for v in value]
    return value


def _kind_of(default: Any) -> Kind:
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, list | tuple):
        return "array"
    if isinstance(default, Mapping):
        return "object"
    return "string"


def _doc(default: Any) -> str:
    """A default as YAML flow text: ``false``, ``24``, ``[]``, ``{k8s-app: kube-dns}``."""
    value = document(default)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_doc(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_doc(v)}" for k, v in value.items()) + "}"
    return str(value)
