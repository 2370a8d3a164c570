"""Compare workloads from two runs that each minted their own session CA.

The sidecar's env carries the CA's fingerprint
(:data:`condukt_egress.manifests.CA_FINGERPRINT_ENV`) and the volumes name the
Secret after its content, CA included (:func:`condukt_egress.manifests.secret_name`),
so two engine runs of the same program differ there and only there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from condukt_egress.manifests import CA_FINGERPRINT_ENV
from condukt_egress.naming import HASH_CHARS, MANAGED_PREFIX

_ENTRY = re.compile(r'("name": "' + CA_FINGERPRINT_ENV + r'", "value": ")([0-9a-f]{64})"')
_SECRET = re.compile(
    f'"({MANAGED_PREFIX}(?:[a-z0-9-]*-)?[a-z2-7]{{{HASH_CHARS}}}-)[a-z2-7]{{{HASH_CHARS}}}"'
)
"""A session Secret's name: the session's prefix (ending in the id's hash), the content hash."""


def mask_ca_fingerprints(value: Any) -> tuple[Any, list[str]]:
    """``value`` with every CA fingerprint and Secret content hash masked, and the fingerprints."""
    text = json.dumps(value, sort_keys=True)
    found = [m.group(2) for m in _ENTRY.finditer(text)]
    text = _SECRET.sub(r'"\1<content hash>"', _ENTRY.sub(r'\1<CA SHA-256>"', text))
    return json.loads(text), found
