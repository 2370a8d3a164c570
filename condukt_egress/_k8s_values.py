"""Kubernetes value syntax the API server enforces, checked at preview time.

A value the API server refuses (a label key with a bad prefix, a resource
quantity like ``lots``) would only fail at ``pulumi up``, after the Secret and
the NetworkPolicy exist. These checks follow apimachinery's validation
(``IsQualifiedName``, ``resource.ParseQuantity``) closely enough to refuse at
preview what the API server would refuse.

Example:
    >>> quantity("cpu", "250m")
    Decimal('0.250')
    >>> label_key_problem("example.com/team") is None
    True
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

__all__ = ["label_key_problem", "quantity"]

_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY: Final = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_SUFFIXES: Final = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def label_key_problem(key: object) -> str | None:
    """Why the API server would refuse ``key`` as a label key, or None.

    A key is ``[prefix/]name``: the name at most 63 characters of
    alphanumerics, ``-``, ``_`` and ``.``, starting and ending alphanumeric;
    the optional prefix a lower-case DNS subdomain of at most 253 characters.
    """
    if not isinstance(key, str):
        return f"must be a string, got {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if not name or len(name) > 63 or not _NAME.match(name):
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


def quantity(name: str, value: object) -> Decimal:
    """The value of a resource quantity (``250m``, ``64Mi``, ``1``), or raise ValueError.

    Args:
        name: The resource (``cpu``, ``memory``), for the message.
        value: The quantity as text, or a number (stack config gives numbers).
    """
    text = value if isinstance(value, str) else _number_text(value)
    match = _QUANTITY.match(text or "")
    if match is None:
        raise ValueError(
            f"is not a Kubernetes quantity; write e.g. {'250m' if name == 'cpu' else '64Mi'}"
        )
    suffix = match["suffix"] or ""
    try:
        number = Decimal(match["number"])
        factor = _SUFFIXES[suffix] if suffix in _SUFFIXES else Decimal(10) ** int(suffix[1:])
        result = number * factor
    except (ArithmeticError, ValueError):  # decimal.Overflow, InvalidOperation
        raise ValueError("is not a Kubernetes quantity of a sensible size") from None
    if result < 0:
        raise ValueError("is negative; a resource quantity is at least 0")
    return result


def _number_text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and value.bit_length() > 128:
        return None
    return str(value)
