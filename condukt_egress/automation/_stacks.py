"""``SessionStacks``: start, inspect and end sandbox sessions as Pulumi stacks.

One stack per session, all in one project (``condukt-egress``), all running the
shared program :func:`condukt_egress.program.session_program` inline, so a
service creates exactly the stack ``pulumi up`` creates from the same config.

The class is built in three layers, one concept each:
:class:`~condukt_egress.automation._workspaces.StackWorkspaces` (workspace
directories, stack config, the CLI),
:class:`~condukt_egress.automation._runner.EngineRunner` (the one engine-call
path: claim, slot, run, record, translate) and, here, the public operations;
:mod:`condukt_egress.automation._lifecycle` adds status, reaping, cancelling
and recovery for services. At most ``max_operations`` engine operations (each
a CLI and two plugin processes) run at once per :class:`SessionStacks`.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pulumi.automation import CommandError, LocalWorkspace, Stack, StackNotFoundError

from condukt_egress.automation._backends import (
    backend_kind,
    uses_passphrase,
    validate_secrets_provider,
)
from condukt_egress.automation._cli import MIN_PULUMI_VERSION, passphrase_env
from condukt_egress.automation._errors import (
    SessionNotFoundError,
    SessionOperationError,
    error_lines,
)
from condukt_egress.automation._lifecycle import (
    cancel_session,
    control_target,
    reap_sessions,
    session_status,
)
from condukt_egress.automation._operations import (
    EngineOptions,
    OnEvent,
    OnOutput,
    Operation,
    changes,
)
from condukt_egress.automation._runner import EngineRunner
from condukt_egress.automation._spec import (
    STACK_PREFIX,
    KubernetesSettings,
    SessionOutputs,
    SessionSpec,
    SessionSummary,
    stack_name,
)
from condukt_egress.automation._status import SessionStatus
from condukt_egress.automation._workspaces import (
    default_state_dir,
    kubernetes_settings,
)
from condukt_egress.errors import AutomationError, ConfigError

if TYPE_CHECKING:
    from condukt_egress.portforward import PortForwardTarget

__all__ = [
    "DEFAULT_MAX_OPERATIONS",
    "MIN_PULUMI_VERSION",
    "SessionStacks",
    "default_state_dir",
]

DEFAULT_MAX_OPERATIONS: Final = 4
"""Engine operations (up, preview, refresh, destroy) one :class:`SessionStacks`
runs at once; more wait for a slot. Each starts a ``pulumi`` CLI and the
kubernetes and tls plugins (see docs/automation.md for measured and estimated memory)."""

_LOG: Final = logging.getLogger("condukt_egress.automation")


class SessionStacks(EngineRunner):
    """Start, inspect and end sandbox sessions, one Pulumi stack each.

    Thread-safe: many sessions may run at once from one process. The same
    session twice at once raises :class:`SessionBusyError` (in this process
    at once, across processes through the backend's lock). Every method
    blocks; :class:`AsyncSessionStacks` wraps them for asyncio.

    Example:
        >>> stacks = SessionStacks(passphrase="from-your-secret-store")  # doctest: +SKIP
        >>> out = stacks.up(SessionSpec("run-42", namespace="agents"))  # doctest: +SKIP
        >>> out.pod_name, out.pod_labels  # doctest: +SKIP
        >>> stacks.destroy("run-42")  # doctest: +SKIP

    Attributes:
        state_dir: Root of the local state: ``backend/`` (file backend) and
            ``workspaces/<stack>/`` (per-session project and stack config).
        backend_url: Where stack state lives; ``file://<state_dir>/backend``
            unless given.
        kubernetes: The Kubernetes provider settings every session gets
            unless its ``up`` passes its own.
        secrets_provider: The ``--secrets-provider`` of new stacks; None is
            the backend's default (Pulumi Cloud's own encryption).
        max_operations: Engine operations that run at once.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        passphrase: str | None = None,
        *,
        backend_url: str | None = None,
        secrets_provider: str | None = None,
        kubernetes: KubernetesSettings | None = None,
        max_operations: int = DEFAULT_MAX_OPERATIONS,
        env: Mapping[str, str] | None = None,
        pulumi_home: str | os.PathLike[str] | None = None,
        pulumi_root: str | os.PathLike[str] | None = None,
        install_plugins: bool = True,
        on_output: OnOutput | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """Hold the project settings; touches neither the CLI nor the disk.

        Args:
            state_dir: Local state root; default :func:`default_state_dir`.
            passphrase: Passphrase of the passphrase secrets provider, used only
                where it is the provider (DIY backends by default, or
                ``secrets_provider="passphrase"``). Default: from ``env`` or the
                environment (``PULUMI_CONFIG_PASSPHRASE`` or
                ``PULUMI_CONFIG_PASSPHRASE_FILE``); with none, this refuses.
            backend_url: Another Pulumi backend instead of the local file
                backend: ``s3://``, ``azblob://``, ``gs://``, ``postgres://``
                or Pulumi Cloud (``https://api.pulumi.com``; log in with
                ``PULUMI_ACCESS_TOKEN`` in ``env``). Replicas of a service may
                share one; the backend's stack lock keeps one update per session.
            secrets_provider: ``None`` (the backend's default: the passphrase
                on DIY backends, the service on Pulumi Cloud), ``"passphrase"``,
                or a KMS URL (``awskms://``, ``azurekeyvault://``, ``gcpkms://``,
                ``hashivault://``; credentials from ``env`` or the environment).
            kubernetes: Provider settings (kubeconfig, context, or a render
                directory) for every session; ``up(spec, kubernetes=...)``
                overrides them for one session. Default: the provider's own.
            max_operations: Engine operations that run at once; the rest wait.
            env: Extra environment for every CLI call (e.g. cloud credentials).
                ``PULUMI_BACKEND_URL`` and the passphrase are always ours.
            pulumi_home: ``PULUMI_HOME`` (plugins, workspace selections);
                default ``~/.pulumi``.
            pulumi_root: Directory holding ``bin/pulumi``; default: ``pulumi`` on PATH.
            install_plugins: Install the kubernetes and tls plugins matching the
                installed SDKs before the first ``up``/``preview``.
            on_output: Progress callback ``(session_id, line)``; default: log
                each line at INFO on ``logger``.
            logger: Logger for progress when ``on_output`` is None; default
                ``condukt_egress.automation``.

        Raises:
            PassphraseRequiredError: The passphrase is the provider, and none
                was given or found.
            ConfigError: A bad ``backend_url``, ``secrets_provider`` or
                ``max_operations``, a passphrase for another provider, or
                invalid ``kubernetes`` settings (raised by them).
        """
        root = Path(state_dir) if state_dir is not None else default_state_dir()
        root = Path(state_dir) if state_dir is not None else default_state_dir()
        self.state_dir = root.expanduser().resolve()
        self._file_backend = backend_url is None
        self.backend_url = backend_url or f"file://{self.state_dir / 'backend'}"
        if isinstance(max_operations, bool) or not isinstance(max_operations, int):
            raise ConfigError(
                "max_operations", f"must be a whole number >= 1, got {max_operations!r}"
            )
        if max_operations < 1:
            raise ConfigError("max_operations", f"must be >= 1, got {max_operations}")
        self.kubernetes = kubernetes_settings(kubernetes, KubernetesSettings())
        self._extra_env = {str(k): str(v) for k, v in (env or {}).items()}
        self.secrets_provider, self._secret_env = _secrets(
            passphrase, secrets_provider, self.backend_url, self._extra_env
        )
        self.max_operations = max_operations
        self._slots = threading.BoundedSemaphore(max_operations)
        self._pulumi_home = str(Path(pulumi_home).expanduser().resolve()) if pulumi_home else None
        self._pulumi_root = str(Path(pulumi_root).expanduser().resolve()) if pulumi_root else None
        self._install_plugins = install_plugins
        self._on_output = on_output
        self._logger = logger or _LOG
        self._guard = threading.Lock()
        self._busy = {}
        self._cli_lock = threading.Lock()
        self._command = None
        self._plugins_lock = threading.Lock()
        self._plugins_ready = False
        self._known = {}

    def __repr__(self) -> str:
        return f"SessionStacks(state_dir={str(self.state_dir)!r}, backend_url={self.backend_url!r})"

    # --- operations ----------------------------------------------------------

    def up(
        self,
        spec: SessionSpec,
        *,
        kubernetes: KubernetesSettings | None = None,
        replace: Sequence[str] | None = None,
        target: Sequence[str] | None = None,
        refresh: bool | None = None,
        parallel: int | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> SessionOutputs:
        """Create or update a session's stack and return its outputs.

        Args:
            spec: The session.
            kubernetes: This session's provider settings (kept in its stack
                config for later operations); default: the instance's.
            replace: URNs to replace even if unchanged, e.g.
                ``[ca_certificate_urn(session_id)]`` to rotate the session CA.
            target: URNs to update alone (and what they depend on is not updated).
            refresh: Refresh the state from the cluster before updating.
            parallel: Resource operations the engine runs at once.
            on_output: Progress lines for this call.
            on_event: Structured engine events for this call.

        Raises:
            PulumiCliError: No usable ``pulumi`` CLI.
            SessionBusyError: Another operation on this session is running.
            SessionOperationError: The update failed; the stack stays destroyable.
        """
        options = EngineOptions(replace, target, refresh, parallel, on_output, on_event)
        with self._spec_operation(spec, "up", kubernetes) as (name, workspace, _, settings):
            stack = self._create_or_select(workspace, name)
            self._configure(stack, spec, settings)
            result = self._engine("up", spec.session_id, stack, options)
            outputs = SessionOutputs.from_stack_outputs(
                name, {key: out.value for key, out in result.outputs.items()}
            )
            if outputs is None:
                raise SessionOperationError(
                    spec.session_id,
                    name,
                    "up",
                    "the update succeeded but the stack exports no session; the workspace must "
                    "run condukt_egress.program.session_program",
                )
            self._remember(spec.session_id, settings, outputs)
            return outputs

    def preview(
        self,
        spec: SessionSpec,
        *,
        kubernetes: KubernetesSettings | None = None,
        replace: Sequence[str] | None = None,
        target: Sequence[str] | None = None,
        refresh: bool | None = None,
        parallel: int | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> dict[str, int]:
        """Preview ``up(spec)``: the planned changes by operation (``create``: 6, ...).

        Changes nothing: the spec's config goes to a temporary copy of the
        stack's config file (``--config-file``), so the next ``up`` applies
        what the stack held before, and a stack created only for the preview
        is removed again. Options as :meth:`up`.
        """
        options = EngineOptions(replace, target, refresh, parallel, on_output, on_event)
        with self._spec_operation(spec, "preview", kubernetes) as (
            name,
            workspace,
            new_dir,
            settings,
        ):
            try:
                stack, created = Stack.select(name, workspace), False
            except StackNotFoundError:
                stack, created = Stack.create(name, workspace), True
            config_file: Path | None = None
            try:
                config_file = self._preview_config(workspace, name, spec, settings)
                result = self._engine(
                    "preview", spec.session_id, stack, options, config_file=str(config_file)
                )
                return changes(result.change_summary)
            finally:
                if config_file is not None:
                    config_file.unlink(missing_ok=True)
                if created:
                    self._forget(workspace, name, new_dir)

    def refresh(
        self,
        session_id: str,
        *,
        target: Sequence[str] | None = None,
        parallel: int | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> dict[str, int]:
        """Adopt the cluster's real state into the session's stack; returns the changes."""
        options = EngineOptions(
            target=target, parallel=parallel, on_output=on_output, on_event=on_event
        )
        with self._operation(session_id, "refresh") as name:
            stack = self._select(session_id, name)
            result = self._engine("refresh", session_id, stack, options)
            return changes(result.summary.resource_changes)

    def destroy(
        self,
        session_id: str,
        remove_stack: bool = True,
        *,
        target: Sequence[str] | None = None,
        refresh: bool | None = None,
        parallel: int | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> dict[str, int]:
        """Delete a session's resources (workload first, NetworkPolicy and Secret last).

        Args:
            session_id: The session.
            remove_stack: Also remove the stack, its history and its workspace
                directory (default). ``False`` keeps an empty stack. Ignored
                (kept) with ``target``, which destroys only part of it.
            target: URNs to destroy alone (and what depends on them).
            refresh: Refresh the state from the cluster first.
            parallel: Resource operations the engine runs at once.
            on_output: Progress lines for this call.
            on_event: Structured engine events for this call.

        Raises:
            SessionNotFoundError: No stack for this session.
            SessionBusyError: Another operation on this session is running.
            SessionOperationError: The destroy failed; call it again.
        """
        options = EngineOptions(
            target=target,
            refresh=refresh,
            parallel=parallel,
            on_output=on_output,
            on_event=on_event,
        )
        return self._destroy(session_id, options, remove_stack=remove_stack and not target)

    def _destroy(
        self,
        session_id: str,
        options: EngineOptions,
        *,
        remove_stack: bool,
        still_stale: Callable[[Stack], bool] | None = None,
    ) -> dict[str, int]:
        """Destroy a session, unless ``still_stale`` (asked once the session is ours) says no."""
        with self._operation(session_id, "destroy") as name:
            stack = self._select(session_id, name)
            if still_stale is not None and not still_stale(stack):
                return {}
            result = self._engine("destroy", session_id, stack, options, remove=remove_stack)
            if remove_stack:
                shutil.rmtree(self.work_dir(session_id), ignore_errors=True)
                self._forget_session(session_id)
            return changes(result.summary.resource_changes)

    def get(self, session_id: str) -> SessionOutputs:
        """The outputs of a running session (does not wait for a running update).

        Raises:
            SessionNotFoundError: No stack, or a stack that holds no session.
        """
        name = stack_name(session_id)
        with self._translated(session_id, name, "get"):
            outputs = self._read_outputs(session_id, name)
        if outputs is None:
            raise SessionNotFoundError(
                session_id,
                name,
                "the stack exists but holds no session (its first up failed, or it was "
                "destroyed without removal); call up(spec), or destroy(session_id)",
            )
        return outputs

    def _read_outputs(self, session_id: str, name: str) -> SessionOutputs | None:
        """The stack's session outputs from the backend (None: no session in it).

        Raises:
            StackNotFoundError: No such stack (the workspace made for asking is removed).
        """
        workspace, new_dir = self._workspace(session_id)
        try:
            raw = workspace.stack_outputs(name)
        except StackNotFoundError:
            if new_dir:
                shutil.rmtree(workspace.work_dir, ignore_errors=True)
            raise
        return SessionOutputs.from_stack_outputs(name, {key: out.value for key, out in raw.items()})

    def list(self) -> Sequence[SessionSummary]:
        """Every session stack in the backend (this project, ``session-*`` stacks)."""
        workspace = self._project_workspace()
        try:
            stacks = workspace.list_stacks()
        except CommandError as exc:
            raise AutomationError(
                f"listing session stacks in {self.backend_url} failed; check the backend is "
                f"reachable and the passphrase is right:\n{error_lines(str(exc))}"
            ) from exc
        out = []
        for summary in stacks:
            name = summary.name.rsplit("/", 1)[-1]
            if name.startswith(STACK_PREFIX):
                out.append(
                    SessionSummary(
                        session_id=self._recorded_session_id(name),
                        stack_name=name,
                        resource_count=summary.resource_count,
                        update_in_progress=summary.update_in_progress,
                        last_update=summary.last_update,
                    )
                )
        return out

    # --- lifecycle for services ---------------------------------------------------

    def status(
        self, session_id: str, *, kubernetes: KubernetesSettings | None = None
    ) -> SessionStatus:
        """What the session is doing now, cheap enough for every HTTP request.

        See :func:`condukt_egress.automation._lifecycle.session_status`: the
        operation record here (no CLI call), the Pod from the API server with
        the session's Kubernetes settings, and the CA's expiry.
        """
        return session_status(self, session_id, kubernetes=kubernetes)

    def reap(
        self,
        older_than: timedelta | float | None = None,
        expiring_within: timedelta | float | None = None,
    ) -> builtins.list[str]:
        """Destroy and remove idle sessions, and those whose CA expires soon; their ids.

        A busy session (here, or in another replica through the backend's
        lock) is skipped, never broken. See
        :func:`condukt_egress.automation._lifecycle.reap_sessions`.
        """
        return reap_sessions(self, older_than, expiring_within)

    def control_target(
        self, session_id: str, *, kubernetes: KubernetesSettings | None = None
    ) -> PortForwardTarget:
        """The session sidecar's control port for :class:`~condukt_egress.control.ControlClient`.

        Reached through the API server's port-forward with the session's
        Kubernetes settings (``kubernetes``, else its last ``up``'s here, else
        the instance's). The sidecar serves one peer at a time.

        Raises:
            SessionNotFoundError: No such session.
            ConfigError: The session's manifests are rendered, not applied.
        """
        return control_target(self, session_id, kubernetes=kubernetes)

    def cancel(self, session_id: str, *, wait: float = 60.0) -> bool:
        """Stop the session's running operation as ``pulumi cancel`` does; True if one was.

        The stack stays destroyable. See
        :func:`condukt_egress.automation._lifecycle.cancel_session`.
        """
        return cancel_session(self, session_id, wait=wait)

    @contextmanager
    def _spec_operation(
        self, spec: SessionSpec, operation: Operation, kubernetes: KubernetesSettings | None
    ) -> Iterator[tuple[str, LocalWorkspace, bool, KubernetesSettings]]:
        """Claim ``spec``'s session for ``up`` or ``preview``, its workspace and plugins ready.

        Yields the stack name, the workspace, whether its directory is new,
        and the provider settings of this call.
        """
        _check_spec(spec)
        settings = self._settings(kubernetes)
        with self._operation(spec.session_id, operation) as name:
            workspace, new_dir = self._workspace(spec.session_id)
            self._ensure_plugins(workspace, spec.session_id)
            yield name, workspace, new_dir, settings


def _secrets(
    passphrase: str | None, provider: str | None, backend_url: str, env: Mapping[str, str]
) -> tuple[str | None, dict[str, str]]:
    """The stacks' secrets provider and the environment that unlocks it.

    Raises:
        PassphraseRequiredError: The passphrase is the provider, and none was given or found.
        ConfigError: A bad backend URL or provider, or a passphrase for another provider.
    """
    kind = backend_kind(backend_url)
    provider = validate_secrets_provider(provider)
    if uses_passphrase(provider, kind):
        return "passphrase", passphrase_env(passphrase, env)
    if passphrase is not None:
        raise ConfigError(
            "passphrase",
            f"is only used by the passphrase secrets provider, but these stacks use "
            f"{provider or 'the Pulumi Cloud service'}; drop passphrase=, or pass "
            "secrets_provider='passphrase'",
        )
    return provider, {}


def _check_spec(spec: object) -> None:
    if not isinstance(spec, SessionSpec):
        raise TypeError(
            f"spec must be SessionSpec, got {type(spec).__name__}; "
            "build it with SessionSpec(session_id=..., ...)"
        )
