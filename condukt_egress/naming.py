"""Safe, collision-free Kubernetes names and labels from any session id.

Session ids come from agent platforms and may be anything: long, unicode,
upper case, full of punctuation. Truncating them (as the original glue did)
let two ids that share a prefix overwrite each other's CA and policy. Here
every name keeps a readable prefix of the id *and* a hash of the whole id, so
names are valid DNS-1123 labels / label values for any input (the Secret's,
longer than a label, a DNS-1123 subdomain as Secret names must be) and differ
for any two ids.

Format (derive from it, e.g. in an admission guard)::

    base         = <prefix>-<hash>   (or <hash> when the id has no [a-z0-9])
    prefix       = the id lower-cased, runs of other characters as '-', ASCII
                   only, trimmed of '-', at most 20 characters
    hash         = the first 26 characters of lower-case RFC 4648 base32 of
                   SHA-256(id as UTF-8): [a-z2-7]{26}, 130 bits
    NetworkPolicy = condukt-egress-<base>            (at most 62 characters)
    Secret       = condukt-egress-<base>-<content>   (at most 89)
    content      = the same 26-character hash of the Secret's files, the CA
                   key aside (the certificate pins it): canonical JSON, keys sorted
    Pod          = workspace-<base>                  (at most 57)
    label        = egress.condukt.dev/session=<base> (at most 47)
    CA subject   = CN=condukt-egress <base>          (at most 62)

The first format kept 64 bits (16 hex characters); upgrading renames every
object of a session once.

The Secret is immutable and named after its content, as kustomize's
``secretGenerator`` names its Secrets: a new policy or CA is a new Secret,
created before the pods that mount it are replaced and deleted after them.
A fixed name made Pulumi replace it delete-before-replace, under the running
pod. Its name is known only with the CA (:func:`SessionNames.secret_name`);
an injection without one names :attr:`SessionNames.secret_prefix`, a name no
Secret can have (it ends with ``-``): such a pod never starts (the API server
admits it, kubelet waits for the Secret) and the guard refuses it.

Example:
    >>> n = session_names("Agent Run #42")
    >>> n.label_value  # doctest: +ELLIPSIS
    'agent-run-42-...'
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from condukt_egress._text import shown
from condukt_egress.errors import ConfigError

__all__ = [
    "ANNOTATION_SESSION_ID",
    "CONFIG_VOLUME",
    "DNS_CONTAINER",
    "DNS_VOLUME",
    "FILTER_CONTAINER",
    "FILTER_VOLUME",
    "HASH_CHARS",
    "LABEL_MANAGED_BY",
    "LABEL_SESSION",
    "MANAGED_PREFIX",
    "MAX_SESSION_ID_LENGTH",
    "NETFILTER_CONTAINER",
    "OUR_CONTAINERS",
    "OUR_VOLUMES",
    "SECRET_HASH_PATTERN",
    "SIDECAR_CONTAINER",
    "TRUST_VOLUME",
    "SessionNames",
    "session_names",
    "validate_session_id",
]

LABEL_SESSION: Final = "egress.condukt.dev/session"
"""Label key every object and pod of a session carries; value from :class:`SessionNames`."""

ANNOTATION_SESSION_ID: Final = "egress.condukt.dev/session-id"
"""Annotation holding the raw, unmodified session id."""

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "condukt-egress"

MANAGED_PREFIX: Final = "condukt-egress-"
"""Prefix of every name condukt-egress gives: Secrets, NetworkPolicies, Pods,
our containers and volumes. Workloads may reference no Secret named with it
but through the injected volumes: each holds a session CA's private key."""

NETFILTER_CONTAINER: Final = "condukt-egress-init"
"""The init container that installs the redirect."""
FILTER_CONTAINER: Final = "condukt-egress-filter"
"""The init container that installs the in-pod filter rules."""
SIDECAR_CONTAINER: Final = "condukt-egress"
"""The proxy container; the ``events`` command finds a session pod's sidecar by it."""
DNS_CONTAINER: Final = "condukt-egress-dns"
"""The session's filtering resolver (CoreDNS), when ``dns_filter`` is on."""
OUR_CONTAINERS: Final = (NETFILTER_CONTAINER, FILTER_CONTAINER, SIDECAR_CONTAINER, DNS_CONTAINER)
"""Every container condukt-egress injects, in start order."""

CONFIG_VOLUME: Final = "condukt-egress-config"
"""Sidecar-only volume: policy, CA certificate and CA key."""
TRUST_VOLUME: Final = "condukt-egress-trust"
"""Workspace volume: the CA certificate and the trust bundle, never the key."""
FILTER_VOLUME: Final = "condukt-egress-filter"
"""Filter-only volume: the filter rules file, nothing else of the Secret."""
DNS_VOLUME: Final = "condukt-egress-dns"
"""Resolver-only volume: its ``Corefile``, nothing else of the Secret."""
OUR_VOLUMES: Final = (CONFIG_VOLUME, TRUST_VOLUME, FILTER_VOLUME, DNS_VOLUME)
"""Every volume condukt-egress injects."""

MAX_SESSION_ID_LENGTH: Final = 1024
"""Ids longer than this are refused: no platform needs more, and it bounds annotations."""

HASH_CHARS: Final = 26
"""Base32 characters of the id's SHA-256 in every name: 130 bits. 64 bits (the
first format) were collided in minutes on two cores; 128 bits and more put a
collision out of reach (about 2**65 hashes for even odds)."""
_PREFIX_CHARS: Final = 20
"""Readable prefix: ``condukt-egress-`` (15) + 20 + ``-`` + 26 = 62 <= 63."""
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HASH: Final = re.compile(f"[a-z2-7]{{{HASH_CHARS}}}")
SECRET_HASH_PATTERN: Final = f"-[a-z2-7]{{{HASH_CHARS}}}$"
"""RE2/Python pattern of a session Secret name's end, after :attr:`SessionNames.secret_prefix`
less its ``-`` (for the guard's CEL ``matches``, with a length check)."""


def _hash(text: str) -> str:
    """The first :data:`HASH_CHARS` characters of lower-case base32 SHA-256 of ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_CHARS]


@dataclass(frozen=True)
class SessionNames:
    """Every name derived from one session id.

    Attributes:
        session_id: The raw id, unchanged.
        base: ``<readable-prefix>-<hash>`` (or ``<hash>``); a valid DNS-1123
            label of at most 47 characters, the hash 26 base32 characters.
        secret_prefix: ``condukt-egress-<base>-``: the Secret holding the CA and
            the policy is this plus a hash of its content
            (:meth:`secret_name`); alone, a name no Secret can have.
        network_policy: Name of the session's NetworkPolicy.
        pod: Name of the workspace Pod the stack program declares.
        label_key: Session label key, :data:`LABEL_SESSION`.
        label_value: Session label value (same as ``base``).
        ca_common_name: Subject CN of the session CA (at most 64 characters).
    """

    session_id: str
    base: str
    secret_prefix: str
    network_policy: str
    pod: str
    label_key: str
    label_value: str
    ca_common_name: str

    @property
    def pod_labels(self) -> dict[str, str]:
        """Labels a session pod must carry for the NetworkPolicy to select it."""
        return {self.label_key: self.label_value}

    def secret_name(self, files: Mapping[str, str]) -> str:
        """The name of the session Secret whose files (CA key aside) are ``files``.

        ``condukt-egress-<base>-<hash>``: the same files give the same name
        (so an unchanged stack shows no diff), other files another name.
        """
        canonical = json.dumps(dict(files), sort_keys=True, separators=(",", ":"))
        return f"{self.secret_prefix}{_hash(canonical)}"

    def owns_secret(self, name: object) -> bool:
        """Whether ``name`` is one of this session's Secret names (any content).

        Exactly ``secret_prefix`` and a content hash: the hash has a fixed
        length and no ``-``, so the session ``a`` never owns a Secret of the
        session ``a-b`` (nor the other way round).
        """
        if not isinstance(name, str) or not name.startswith(self.secret_prefix):
            return False
        return _HASH.fullmatch(name[len(self.secret_prefix) :]) is not None


def validate_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is usable, else raise :class:`ConfigError`.

    Any non-empty, well-formed Unicode string up to
    :data:`MAX_SESSION_ID_LENGTH` characters is accepted; the names derived
    from it are made safe by :func:`session_names`.
    """
    if not isinstance(session_id, str):
        raise ConfigError(
            "session_id",
            f"must be a string, got {type(session_id).__name__} {shown(session_id)}; "
            "pass the session id as text, e.g. session_id='42'",
        )
    if not session_id.strip():
        raise ConfigError(
            "session_id",
            f"must not be empty or blank (got {shown(session_id)}); "
            "pass the agent platform's id for this session",
        )
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            "session_id",
            f"contains {session_id[exc.start]!r}, an unpaired surrogate that is not valid "
            "Unicode text; Kubernetes stores UTF-8, so pass well-formed text",
        ) from None
    if "\x00" in session_id:
        raise ConfigError(
            "session_id",
            "contains a NUL character, which a process argument cannot carry: the sidecar "
            "gets the id as --session-id=<id>; remove the NUL",
        )
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise ConfigError(
            "session_id",
            f"is {len(session_id)} characters long, more than {MAX_SESSION_ID_LENGTH}; "
            "use a shorter id (a UUID or a hash of the long one)",
        )
    return session_id


def _readable_prefix(session_id: str) -> str:
    lowered = session_id.lower()
    cleaned = re.sub(r"[^a-z0-9]+", "-", lowered.encode("ascii", "ignore").decode())
    return cleaned.strip("-")[:_PREFIX_CHARS].strip("-")


def session_names(session_id: str) -> SessionNames:
    """Derive every name and label of a session from its id.

    Args:
        session_id: Any string accepted by :func:`validate_session_id`.

    Returns:
        The names; all valid DNS-1123 labels (so also valid label values), and
        distinct for distinct ids because they embed a hash of the full id.

    Raises:
        ConfigError: The id is empty, blank, too long or not a string.
    """
    validate_session_id(session_id)
    hash_part = _hash(session_id)
    prefix = _readable_prefix(session_id)
    base = f"{prefix}-{hash_part}" if prefix else hash_part
    name = f"{MANAGED_PREFIX}{base}"
    names = SessionNames(
        session_id=session_id,
        base=base,
        secret_prefix=f"{name}-",
        network_policy=name,
        pod=f"workspace-{base}",
        label_key=LABEL_SESSION,
        label_value=base,
        ca_common_name=f"condukt-egress {base}",
    )
    for value in (names.base, names.network_policy, names.pod):
        if not _DNS_LABEL.match(value) or len(value) > 63:  # pragma: no cover - invariant
            raise AssertionError(f"derived name {value!r} is not a DNS-1123 label")
    return names
