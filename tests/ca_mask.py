"""Compare workloads from two runs that each minted their own session CA.

The sidecar's env carries the CA's fingerprint
(:data:`condukt_egress.manifests.CA_FINGERPRINT_ENV`), so two engine runs of
the same program differ there and only there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from condukt_egress.manifests import CA_FINGERPRINT_ENV

_ENTRY = re.compile(r'("name": "' + CA_FINGERPRINT_ENV + r'", "value": ")([0-9a-f]{64})"')


def mask_ca_fingerprints(value: Any) -> tuple[Any, list[str]]:
    """``value`` with every CA fingerprint replaced by a placeholder, and those found."""
    text = json.dumps(value, sort_keys=True)
    found = [m.group(2) for m in _ENTRY.finditer(text)]
    return json.loads(_ENTRY.sub(r'\1<CA SHA-256>"', text)), found
