"""The checks an option declaration carries: each validates one value and names its field.

A check is ``check(name, value) -> value``: it returns the value normalised
(a tuple for a list, a canonical CIDR, an int for a whole float from stack
config) or raises :class:`~condukt_egress.errors.ConfigError` naming
``name`` and the fix. Options declare theirs with
``option(..., check=...)`` (see :mod:`condukt_egress.options`), and
:func:`~condukt_egress.options.check_fields` runs them all, so
:class:`~condukt_egress.args.SandboxEgressArgs` and the guard's args share
one implementation of every rule.

Example:
    >>> port("proxy_port", 15001.0)
    15001
    >>> list_of(ipv4_network)("cluster_cidrs", ["100.64.0.0/10"])
    ('100.64.0.0/10',)
    >>> labels("dns_pod_labels", {"k8s-app": "kube-dns"})
    {'k8s-app': 'kube-dns'}
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias

from condukt_egress import contract
from condukt_egress._text import shown
from condukt_egress.errors import ConfigError

__all__ = [
    "Check",
    "boolean",
    "capability",
    "dns_label",
    "image",
    "ipv4_address",
    "ipv4_network",
    "label_key_problem",
    "labels",
    "list_of",
    "one_of",
    "optional",
    "port",
    "sequence",
    "sidecar_port",
    "user_id",
    "validate_image",
    "whole",
]

Check: TypeAlias = Callable[[str, Any], Any]
"""``check(name, value)``: the value normalised, or a ``ConfigError`` naming ``name``."""

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CAPABILITY: Final = re.compile(r"^[A-Z][A-Z0-9_]*$")


# -- combinators ----------------------------------------------------------------------


def sequence(name: str, value: object) -> Sequence[Any]:
    """``value`` if it is a list (a string or a mapping is not)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list, got {shown(value)}")
    return value


def list_of(item: Check) -> Check:
    """A check of a list whose entries each pass ``item``; the value becomes a tuple."""

    def check(name: str, value: object) -> tuple[Any, ...]:
        return tuple(item(name, entry) for entry in sequence(name, value))

    return check


def optional(inner: Check) -> Check:
    """``inner``, letting ``None`` (unset) through."""

    def check(name: str, value: object) -> Any:
        return None if value is None else inner(name, value)

    return check


def one_of(choices: Sequence[str]) -> Check:
    """A check that the value is one of ``choices`` (a ``Literal``'s ``get_args``)."""
    closed = tuple(choices)

    def check(name: str, value: object) -> Any:
        if value not in closed:
            hint = ""
            if isinstance(value, str) and value.lower().replace("_", "-") in closed:
                hint = f" (did you mean {shown(value.lower().replace('_', '-'))}?)"
            raise ConfigError(
                name, f"must be one of {', '.join(map(repr, closed))}, got {shown(value)}{hint}"
            )
        return value

    return check


# -- values ---------------------------------------------------------------------------


def boolean(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or ``"true"``)."""
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, got {shown(value)}")
    return value


def whole(value: object) -> int | None:
    """``value`` as an int if it is a whole number (stack config gives floats), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def port(name: str, value: object) -> int:
    """A port number from 1 to 65535."""
    number = whole(value)
    if number is None or not 1 <= number <= 65535:
        raise ConfigError(name, f"must be a port number from 1 to 65535, got {shown(value)}")
    return number


def sidecar_port(name: str, value: object) -> int:
    """A port the sidecar listens on: a port, and not one the redirect sends to the proxy."""
    number = port(name, value)
    if number in contract.REDIRECTED_PORTS:
        raise ConfigError(
            name,
            f"must not be {number}: TCP 80 and 443 are redirected to the proxy; use the "
            "defaults 15001/15002 or another free port",
        )
    return number


def user_id(name: str, value: object) -> int:
    """A non-root uid or gid."""
    number = whole(value)
    if number is None or not 1 <= number <= 2**31 - 1:
        raise ConfigError(
            name,
            f"must be a non-root id from 1 to 2147483647, got {shown(value)}; the image's "
            f"default is {contract.DEFAULT_SIDECAR_UID}",
        )
    return number


def dns_label(name: str, value: object) -> str:
    """A Kubernetes namespace name (an RFC 1123 label)."""
    if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > 63:
        raise ConfigError(
            name,
            f"must be a Kubernetes namespace name (lower-case letters, digits and '-', "
            f"at most 63 characters, starting and ending alphanumeric), got {shown(value)}",
        )
    return value


def validate_image(field_name: str, value: object, default: str) -> str:
    """Return ``value`` if it can be a container image reference, else raise.

    Image references are printable ASCII without spaces (OCI distribution
    spec); anything else would only fail later, at pull time.

    Raises:
        ConfigError: Naming ``field_name`` and the default to fall back on.
    """
    if (
        not isinstance(value, str)
        or not value
        or not value.isascii()
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ConfigError(
            field_name,
            f"must be a container image reference (printable ASCII without spaces), "
            f"got {shown(value)}; default is {shown(default)}",
        )
    return value


def image(default: str) -> Check:
    """A check of a container image reference, whose error offers ``default``."""

    def check(name: str, value: object) -> str:
        return validate_image(name, value, default)

    return check


def labels(name: str, value: object) -> dict[str, str]:
    """A non-empty mapping of Kubernetes label keys to label values."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            name, f"must be a non-empty mapping of label keys to values, got {shown(value)}"
        )
    out: dict[str, str] = {}
    for key, val in value.items():
        problem = label_key_problem(key)
        if problem is not None:
            raise ConfigError(
                f"{name}[{shown(key)}]", f"is not a valid Kubernetes label key: it {problem}"
            )
        if not isinstance(val, str) or len(val) > 63 or not _LABEL_VALUE.match(val):
            raise ConfigError(
                f"{name}[{shown(key)}]", f"value {shown(val)} is not a valid label value"
            )
        out[key] = val
    return out


def label_key_problem(key: object) -> str | None:
    """Why the API server would refuse ``key`` as a label key, or None.

    A key is ``[prefix/]name`` (apimachinery's ``IsQualifiedName``): the name
    at most 63 characters of alphanumerics, ``-``, ``_`` and ``.``, starting
    and ending alphanumeric; the prefix a lower-case DNS subdomain of at most
    253 characters.
    """
    if not isinstance(key, str):
        return f"must be a string, got {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            "has a bad name part: at most 63 characters of letters, digits, '-', '_' and "
            "'.', starting and ending with a letter or digit"
        )
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return (
            "has a bad prefix: the part before '/' must be a lower-case DNS subdomain "
            "such as example.com (at most 253 characters)"
        )
    return None


def ipv4_address(name: str, value: object) -> str:
    """An IPv4 address, in canonical form."""
    try:
        addr = ipaddress.ip_address(value)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(
            name, f"must be an IPv4 address like 169.254.20.10, got {shown(value)}"
        ) from None
    if addr.version != 4:
        raise ConfigError(
            name, f"must be IPv4, got {shown(value)}: the NetworkPolicy allows no IPv6 at all"
        )
    return str(addr)


def ipv4_network(name: str, value: object) -> str:
    """An IPv4 CIDR with no host bits set, in canonical form."""
    try:
        net = ipaddress.ip_network(value, strict=True)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            name, f"must be an IPv4 CIDR like 10.96.0.0/12, got {shown(value)} ({exc})"
        ) from None
    if net.version != 4:
        raise ConfigError(
            name,
            f"must be IPv4, got {shown(value)}: the NetworkPolicy allows no IPv6 at all, "
            "so IPv6 ranges need no entry",
        )
    return str(net)


def capability(name: str, value: object) -> str:
    """A Linux capability name, upper-case without ``CAP_`` (``net_raw``: ``NET_RAW``)."""
    if not isinstance(value, str):
        raise ConfigError(name, f"entries must be strings, got {shown(value)}")
    cap = value.upper().removeprefix("CAP_")
    if not _CAPABILITY.match(cap):
        raise ConfigError(name, f"{shown(value)} is not a Linux capability name like NET_RAW")
    return cap
