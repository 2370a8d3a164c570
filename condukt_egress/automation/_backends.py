"""Where session stacks keep their state, and who encrypts their secrets.

Pulumi has two kinds of state backends. DIY ("self-managed") backends keep
state in a file tree: ``file://``, ``s3://``, ``azblob://``, ``gs://`` or
``postgres://``; their default secrets provider is the passphrase, and they
lock a stack during an update with a lock object next to its state. Pulumi
Cloud (``https://api.pulumi.com`` or a self-hosted ``https://`` URL) keeps
state and locks in its service and encrypts secrets itself by default. Any
backend can use a KMS secrets provider (``awskms://``, ``azurekeyvault://``,
``gcpkms://``, ``hashivault://``) or the passphrase instead.

These rules decide whether a passphrase is needed at all: only where the
passphrase is the provider.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlsplit

from condukt_egress.errors import ConfigError

__all__ = [
    "DIY_SCHEMES",
    "KMS_SCHEMES",
    "BackendKind",
    "backend_kind",
    "uses_passphrase",
    "validate_secrets_provider",
]

BackendKind = Literal["diy", "cloud"]

DIY_SCHEMES: Final = ("file", "s3", "azblob", "gs", "postgres")
"""Self-managed backends: state in a file tree, a lock object per running update."""

KMS_SCHEMES: Final = ("awskms", "azurekeyvault", "gcpkms", "hashivault")
"""Cloud secrets providers the CLI accepts as ``--secrets-provider`` URLs."""

_EXAMPLES: Final = (
    "file:///var/lib/agents/pulumi, s3://bucket/prefix?region=eu-west-1, "
    "azblob://container, gs://bucket, postgres://user@host/db, https://api.pulumi.com"
)


def backend_kind(url: str) -> BackendKind:
    """Whether ``url`` is a DIY backend or Pulumi Cloud.

    Raises:
        ConfigError: ``url`` is not a backend URL the CLI logs in to.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("backend_url", f"must be a backend URL like {_EXAMPLES}, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme in DIY_SCHEMES:
        # The CLI runs in each session's own directory: a relative path would
        # give every session its own backend.
        if parts.scheme == "file" and not url[len("file://") :].startswith(("/", "~")):
            raise ConfigError(
                "backend_url",
                f"file backends need an absolute path (file:///abs/dir or file://~/dir), "
                f"got {url!r}",
            )
        return "diy"
    if parts.scheme in ("https", "http") and parts.netloc:
        return "cloud"
    raise ConfigError(
        "backend_url",
        f"{url!r} is not a Pulumi backend URL; use a DIY backend ({', '.join(DIY_SCHEMES)}) "
        f"or Pulumi Cloud (https://...), e.g. {_EXAMPLES}",
    )


def validate_secrets_provider(value: object) -> str | None:
    """``value`` as the CLI's ``--secrets-provider``; None means the backend's default.

    Raises:
        ConfigError: Not ``None``, ``"default"``, ``"passphrase"`` or a KMS URL.
    """
    if value is None or value == "default":
        return None
    if value == "passphrase":
        return "passphrase"
    if isinstance(value, str) and urlsplit(value).scheme in KMS_SCHEMES and "://" in value:
        return value
    raise ConfigError(
        "secrets_provider",
        f"must be None (the backend's default), 'passphrase' or a KMS URL "
        f"({', '.join(s + '://...' for s in KMS_SCHEMES)}), got {value!r}",
    )


def uses_passphrase(secrets_provider: str | None, kind: BackendKind) -> bool:
    """Whether the stacks' secrets provider is the passphrase.

    ``None`` is the backend's default: the passphrase on DIY backends, the
    Pulumi Cloud service's own encryption on Pulumi Cloud.
    """
    if secrets_provider is None:
        return kind == "diy"
    return secrets_provider == "passphrase"
