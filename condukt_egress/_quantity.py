"""Kubernetes resource quantities: parse, add, print.

Small on purpose: ``kubernetes.utils.parse_quantity`` does the same but
importing the client takes over a second, and :func:`inject` runs at preview
time for every workload.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = ["format_quantity", "parse_quantity"]

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
_QUANTITY: Final = re.compile(
    r"^\+?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)


def parse_quantity(value: object) -> Decimal:
    """The quantity's value (``"100Mi"`` -> 104857600, ``"250m"`` -> 0.25).

    Raises:
        ValueError: ``value`` is not a non-negative Kubernetes quantity.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity")
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a quantity like 100Mi, 0.5 or 250m")
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise ValueError(f"{value!r} is not a quantity") from None
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    return number * _SUFFIXES[match["suffix"] or ""]


def format_quantity(value: Decimal, resource: str) -> str:
    """Print a quantity the way a person would write it, never rounding down.

    CPU in cores or millicores (``1``, ``180m``); anything else in whole
    units, with the largest binary suffix that divides it (``180Mi``).
    """
    if resource == "cpu":
        milli = math.ceil(value * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    whole = math.ceil(value)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if whole and whole % unit == 0:
            return f"{whole // unit}{suffix}"
    return str(whole)
