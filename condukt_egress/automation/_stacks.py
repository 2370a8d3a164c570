"""``SessionStacks``: start, inspect and end sandbox sessions as Pulumi stacks.

One stack per session, all in one project (``condukt-egress``), all running the
shared program :func:`condukt_egress.program.session_program` inline, so a
service creates exactly the stack ``pulumi up`` creates from the same config.

Each session gets its own workspace directory (``<state_dir>/workspaces/<stack>``
holding ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``) and every CLI call gets its
environment from the workspace options, never from a changed ``os.environ``,
so many sessions run at once from one process, each isolated, and at most
``max_operations`` engine operations (each a CLI and two plugin processes)
run at once per :class:`SessionStacks`.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml
from pulumi.automation import (
    CommandError,
    EngineEvent,
    LocalWorkspace,
    LocalWorkspaceOptions,
    ProjectBackend,
    ProjectRuntimeInfo,
    ProjectSettings,
    PulumiCommand,
    Stack,
    StackNotFoundError,
)

from condukt_egress.automation._backends import (
    backend_kind,
    uses_passphrase,
    validate_secrets_provider,
)
from condukt_egress.automation._cli import (
    MIN_PULUMI_VERSION,
    find_cli,
    passphrase_env,
    set_secrets,
)
from condukt_egress.automation._errors import (
    SessionBusyError,
    SessionNotFoundError,
    SessionOperationError,
    error_lines,
    translate,
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
from condukt_egress.automation._spec import (
    KUBERNETES_CONFIG_KEYS,
    PROJECT_NAME,
    STACK_PREFIX,
    KubernetesSettings,
    SessionOutputs,
    SessionSpec,
    SessionSummary,
    secret_config,
    stack_config,
    stack_config_json,
    stack_name,
)
from condukt_egress.automation._status import (
    SessionStatus,
    now,
    outputs_of,
    read_record,
    record_outputs,
    write_record,
)
from condukt_egress.errors import AutomationError, ConfigError
from condukt_egress.program import session_program

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
_PLUGINS: Final = (("kubernetes", "pulumi_kubernetes"), ("tls", "pulumi_tls"))
_PROJECT_DIR: Final = "_project"  # workspace for list(); stack names start with "session-"


_MODULES_LOCK: Final = threading.Lock()
_modules_loaded = False


def load_program_modules() -> None:
    """Load the resource SDK modules the session program uses, once, under a lock.

    ``pulumi_kubernetes`` loads its submodules lazily (``importlib``'s
    ``LazyLoader``), which before Python 3.12 is not thread-safe: two inline
    programs reaching ``k8s.core.v1`` at once, one per session thread, can
    see a half-loaded module (``module 'pulumi_kubernetes.core.v1' has no
    attribute 'Secret'``; seen with ten concurrent ``up`` on the real engine).
    """
    global _modules_loaded  # noqa: PLW0603 - a process-wide once
    with _MODULES_LOCK:
        if _modules_loaded:
            return
        import pulumi_kubernetes as k8s  # noqa: PLC0415
        import pulumi_tls as tls  # noqa: PLC0415

        for module, name in (
            (k8s.core.v1, "Secret"),
            (k8s.core.v1, "Pod"),
            (k8s.networking.v1, "NetworkPolicy"),
            (k8s.apps.v1, "Deployment"),
            (k8s.batch.v1, "Job"),
            (k8s.meta.v1, "ObjectMetaArgs"),
            (tls, "PrivateKey"),
            (tls, "SelfSignedCert"),
        ):
            getattr(module, name)
        _modules_loaded = True


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/condukt-egress``, or ``~/.local/state/condukt-egress``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "condukt-egress"


def _write_if_changed(path: Path, text: str) -> None:
    """Replace ``path`` atomically, so a concurrent reader never sees a torn file."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class SessionStacks:
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
        self.state_dir = root.expanduser().resolve()
        self._file_backend = backend_url is None
        self.backend_url = backend_url or f"file://{self.state_dir / 'backend'}"
        kind = backend_kind(self.backend_url)
        provider = validate_secrets_provider(secrets_provider)
        if isinstance(max_operations, bool) or not isinstance(max_operations, int):
            raise ConfigError(
                "max_operations", f"must be a whole number >= 1, got {max_operations!r}"
            )
        if max_operations < 1:
            raise ConfigError("max_operations", f"must be >= 1, got {max_operations}")
        if kubernetes is not None and not isinstance(kubernetes, KubernetesSettings):
            raise TypeError(
                f"kubernetes must be KubernetesSettings, got {type(kubernetes).__name__}; "
                "build it with KubernetesSettings(context=...)"
            )
        self.kubernetes = kubernetes or KubernetesSettings()
        self._extra_env = {str(k): str(v) for k, v in (env or {}).items()}
        if uses_passphrase(provider, kind):
            self.secrets_provider: str | None = "passphrase"
            self._secret_env = passphrase_env(passphrase, self._extra_env)
        elif passphrase is not None:
            raise ConfigError(
                "passphrase",
                f"is only used by the passphrase secrets provider, but these stacks use "
                f"{provider or 'the Pulumi Cloud service'}; drop passphrase=, or pass "
                "secrets_provider='passphrase'",
            )
        else:
            self.secrets_provider = provider
            self._secret_env = {}
        self.max_operations = max_operations
        self._slots = threading.BoundedSemaphore(max_operations)
        self._pulumi_home = str(Path(pulumi_home).expanduser().resolve()) if pulumi_home else None
        self._pulumi_root = str(Path(pulumi_root).expanduser().resolve()) if pulumi_root else None
        self._install_plugins = install_plugins
        self._on_output = on_output
        self._logger = logger or _LOG
        self._guard = threading.Lock()
        self._busy: dict[str, str] = {}
        self._cli_lock = threading.Lock()
        self._command: PulumiCommand | None = None
        self._plugins_lock = threading.Lock()
        self._plugins_ready = False
        self._known: dict[str, tuple[KubernetesSettings, SessionOutputs]] = {}

    def __repr__(self) -> str:
        return f"SessionStacks(state_dir={str(self.state_dir)!r}, backend_url={self.backend_url!r})"

    # --- settings (pure) ---------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The environment every CLI call of these stacks gets on top of ``os.environ``.

        Contains the passphrase (or its file): do not log it.
        """
        env = dict(self._extra_env)
        env.update(self._secret_env)
        env["PULUMI_BACKEND_URL"] = self.backend_url
        env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
        return env

    def project_settings(self) -> ProjectSettings:
        """The ``Pulumi.yaml`` of every session workspace (same project as the repo's)."""
        return ProjectSettings(
            name=PROJECT_NAME,
            runtime=ProjectRuntimeInfo(name="python"),
            description="condukt-egress sandbox sessions, one stack each (Automation API).",
            backend=ProjectBackend(url=self.backend_url),
        )

    def work_dir(self, session_id: str) -> Path:
        """The workspace directory of a session: ``<state_dir>/workspaces/<stack>``."""
        return self.state_dir / "workspaces" / stack_name(session_id)

    def workspace_options(self, session_id: str) -> LocalWorkspaceOptions:
        """The Automation API options of a session's workspace (CLI filled in on use)."""
        return LocalWorkspaceOptions(
            work_dir=str(self.work_dir(session_id)),
            pulumi_home=self._pulumi_home,
            program=session_program,
            env_vars=self.environment(),
            secrets_provider=self.secrets_provider,
        )

    # --- operations ----------------------------------------------------------

    def pulumi_version(self) -> str:
        """Find and check the ``pulumi`` CLI now, e.g. when a service starts.

        Raises:
            PulumiCliError: Not found, not runnable, or older than 3.203.
        """
        return str(self._cli().version or "unknown")

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
        _check_spec(spec)
        options = EngineOptions(replace, target, refresh, parallel, on_output, on_event)
        settings = self._settings(kubernetes)
        with self._operation(spec.session_id, "up") as name:
            workspace, _ = self._workspace(spec.session_id)
            self._ensure_plugins(workspace, spec.session_id)
            stack = Stack.create_or_select(name, workspace)
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
        _check_spec(spec)
        options = EngineOptions(replace, target, refresh, parallel, on_output, on_event)
        settings = self._settings(kubernetes)
        with self._operation(spec.session_id, "preview") as name:
            workspace, new_dir = self._workspace(spec.session_id)
            self._ensure_plugins(workspace, spec.session_id)
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
        workspace = self._project_workspace(self.state_dir / "workspaces" / _PROJECT_DIR)
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

    # --- internals -----------------------------------------------------------

    @contextmanager
    def _operation(self, session_id: str, operation: Operation) -> Iterator[str]:
        """Run one engine operation: claim the session, take a slot, translate failures."""
        name = stack_name(session_id)
        with (
            self._claim(session_id, name, operation),
            self._slot(session_id, operation),
            self._translated(session_id, name, operation),
        ):
            yield name

    @contextmanager
    def _claim(self, session_id: str, name: str, operation: str) -> Iterator[None]:
        """Mark the session busy in this process, or raise :class:`SessionBusyError`."""
        with self._guard:
            running = self._busy.get(name)
            if running is not None:
                raise SessionBusyError(
                    session_id,
                    name,
                    f"cannot {operation}: {running} is already running for this session in "
                    "this process; wait for it to return, then retry",
                )
            self._busy[name] = operation
        try:
            yield
        finally:
            with self._guard:
                del self._busy[name]

    @contextmanager
    def _slot(self, session_id: str, operation: str) -> Iterator[None]:
        """Hold one of the ``max_operations`` slots, waiting (and saying so) if none is free."""
        if not self._slots.acquire(blocking=False):
            self._logger.info(
                "session %s: %s waits for one of %d operation slots",
                session_id,
                operation,
                self.max_operations,
            )
            self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    @contextmanager
    def _translated(self, session_id: str, name: str, operation: str) -> Iterator[None]:
        """Turn the SDK's ``CommandError`` into our error with the next step."""
        try:
            yield
        except CommandError as exc:
            raise translate(
                exc,
                operation=operation,
                session_id=session_id,
                stack_name=name,
                backend_url=self.backend_url,
                work_dir=str(self.work_dir(session_id)),
            ) from exc

    def _engine(
        self,
        operation: Operation,
        session_id: str,
        stack: Stack,
        options: EngineOptions,
        **extra: Any,
    ) -> Any:
        """The one call of the engine: ``stack.<operation>`` with our sinks and the options."""
        options.check(operation)
        load_program_modules()
        sink = self._sink(session_id, options.on_output)
        run = getattr(stack, operation)
        work_dir = self.work_dir(session_id)
        recorded = operation != "preview"  # a preview changes nothing, so records nothing
        if recorded:
            write_record(
                work_dir,
                operation=operation,
                result="running",
                pid=os.getpid(),
                at=now().isoformat(),
                exists=True,
            )
        try:
            result = run(
                color="never",
                on_output=sink,
                on_error=sink,
                on_event=self._event_sink(session_id, options.on_event),
                **options.sdk_arguments(),
                **extra,
            )
        except BaseException:
            if recorded:
                write_record(work_dir, result="failed", at=now().isoformat())
            raise
        if recorded:
            gone = {"outputs": None} if operation == "destroy" else {}
            write_record(work_dir, result="succeeded", at=now().isoformat(), **gone)
        return result

    def _cli(self) -> PulumiCommand:
        """The ``pulumi`` CLI, found and version-checked once."""
        with self._cli_lock:
            if self._command is None:
                self._command = find_cli(self._pulumi_root)
            return self._command

    def _project_workspace(self, project_dir: Path) -> LocalWorkspace:
        """A workspace of the project outside any session, for listing and reading stacks."""
        command = self._cli()
        self._prepare(project_dir)
        return LocalWorkspace(
            work_dir=str(project_dir),
            pulumi_home=self._pulumi_home,
            env_vars=self.environment(),
            pulumi_command=command,
        )

    def _prepare(self, work_dir: Path) -> bool:
        """Create ``work_dir`` with ``Pulumi.yaml``; True if the directory is new."""
        created = not work_dir.exists()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._file_backend:
            (self.state_dir / "backend").mkdir(exist_ok=True, mode=0o700)
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = yaml.safe_dump(self.project_settings().to_dict(), sort_keys=False)
        _write_if_changed(work_dir / "Pulumi.yaml", text)
        return created

    def _workspace(self, session_id: str) -> tuple[LocalWorkspace, bool]:
        """The session's workspace; True if its directory was created now."""
        command = self._cli()
        created = self._prepare(self.work_dir(session_id))
        options = self.workspace_options(session_id)
        workspace = LocalWorkspace(
            work_dir=options.work_dir,
            pulumi_home=options.pulumi_home,
            program=options.program,
            env_vars=options.env_vars,
            secrets_provider=options.secrets_provider,
            pulumi_command=command,
        )
        return workspace, created

    def _select(self, session_id: str, name: str) -> Stack:
        """Select an existing session stack, or raise :class:`SessionNotFoundError`."""
        workspace, new_dir = self._workspace(session_id)
        try:
            stack = Stack.select(name, workspace)
        except StackNotFoundError:
            if new_dir:
                shutil.rmtree(workspace.work_dir, ignore_errors=True)
            raise
        if not (Path(workspace.work_dir) / f"Pulumi.{name}.yaml").exists():
            # Made by another replica: its config (sessionId, the kubeconfig secret)
            # is in the stack's last deployment, not here. Without it the program
            # cannot run for refresh or destroy.
            try:
                workspace.refresh_config(name)
            except CommandError as exc:
                self._logger.info(
                    "session %s: no stack config here to restore: %s",
                    session_id,
                    error_lines(str(exc), 2),
                )
        return stack

    def _forget(self, workspace: LocalWorkspace, name: str, new_dir: bool) -> None:
        """Remove a stack made only for a preview (best effort, logged on failure)."""
        try:
            workspace.remove_stack(name)
        except CommandError as exc:
            self._logger.warning(
                "could not remove preview stack %s: %s", name, error_lines(str(exc))
            )
            return
        if new_dir:
            shutil.rmtree(workspace.work_dir, ignore_errors=True)

    def _settings(self, kubernetes: KubernetesSettings | None) -> KubernetesSettings:
        """This call's provider settings: its own, else the instance's."""
        if kubernetes is not None and not isinstance(kubernetes, KubernetesSettings):
            raise TypeError(
                f"kubernetes must be KubernetesSettings, got {type(kubernetes).__name__}; "
                "build it with KubernetesSettings(context=...)"
            )
        return kubernetes or self.kubernetes

    def _preview_config(
        self, workspace: LocalWorkspace, name: str, spec: SessionSpec, settings: KubernetesSettings
    ) -> Path:
        """A private copy of the stack's config file holding ``spec``'s config.

        The copy keeps the stack's secrets-provider fields (salt or encrypted
        key), so the CLI encrypts the spec's secrets as it would in the real
        file; provider keys the spec no longer wants are dropped from it.
        """
        work_dir = Path(workspace.work_dir)
        stored = work_dir / f"Pulumi.{name}.yaml"
        try:
            doc = yaml.safe_load(stored.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            doc = {}
        wanted = stack_config(spec, settings)
        config = doc.get("config") or {}
        doc["config"] = {
            k: v for k, v in config.items() if k not in KUBERNETES_CONFIG_KEYS or k in wanted
        }
        fd, tmp = tempfile.mkstemp(dir=work_dir, prefix=".preview-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(doc, sort_keys=False))
        path = Path(tmp)
        config_json = stack_config_json(spec, settings)
        args = ["config", "set-all", "--config-file", str(path), "--stack", name]
        args += ["--json", config_json]
        try:
            self._cli().run(args, str(work_dir), self._cli_env())
            self._set_secrets(work_dir, name, secret_config(spec, settings), config_file=path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _configure(self, stack: Stack, spec: SessionSpec, settings: KubernetesSettings) -> None:
        """Set the session's full stack config; drop provider keys no longer wanted."""
        wanted = stack_config(spec, settings)
        current = stack.get_all_config()
        stack.set_all_config_json(stack_config_json(spec, settings))
        self._set_secrets(Path(stack.workspace.work_dir), stack.name, secret_config(spec, settings))
        stale = [key for key in KUBERNETES_CONFIG_KEYS if key in current and key not in wanted]
        if stale:
            stack.remove_all_config(stale)

    def _cli_env(self) -> dict[str, str]:
        """The environment of a CLI call made outside the SDK's workspace."""
        env = {"PULUMI_HOME": self._pulumi_home} if self._pulumi_home else {}
        return {**env, **self.environment()}

    def _set_secrets(
        self,
        work_dir: Path,
        name: str,
        secrets: Mapping[str, str],
        *,
        config_file: Path | None = None,
    ) -> None:
        """Set secret config values on the CLI's stdin (see :func:`set_secrets`)."""
        if secrets:
            set_secrets(
                self._cli(), work_dir, name, secrets, self._cli_env(), config_file=config_file
            )

    def _ensure_plugins(self, workspace: LocalWorkspace, session_id: str) -> None:
        """Install the resource plugins matching the installed SDKs, once per instance."""
        if not self._install_plugins:
            return
        with self._plugins_lock:
            if self._plugins_ready:
                return
            for plugin, dist in _PLUGINS:
                version = f"v{metadata.version(dist)}"
                try:
                    workspace.install_plugin(plugin, version)
                except CommandError as exc:
                    raise SessionOperationError(
                        session_id,
                        stack_name(session_id),
                        "install plugins",
                        f"could not install the {plugin} {version} resource plugin; allow the "
                        f"download, or run `pulumi plugin install resource {plugin} {version}` "
                        "and pass install_plugins=False",
                        error_lines(str(exc)),
                    ) from exc
            self._plugins_ready = True

    def _sink(self, session_id: str, on_output: OnOutput | None) -> Callable[[str], None]:
        """A line consumer for the SDK; never lets a callback error stall the CLI pipe."""
        callback = on_output or self._on_output
        logger = self._logger

        def sink(line: str) -> None:
            if callback is None:
                logger.info("session %s: %s", session_id, line)
                return
            try:
                callback(session_id, line)
            except Exception:
                logger.exception("on_output callback failed for session %s", session_id)

        return sink

    def _event_sink(
        self, session_id: str, on_event: OnEvent | None
    ) -> Callable[[EngineEvent], None] | None:
        """An engine-event consumer for the SDK; a callback error is logged, never raised."""
        if on_event is None:
            return None
        logger = self._logger

        def sink(event: EngineEvent) -> None:
            try:
                on_event(session_id, event)
            except Exception:
                logger.exception("on_event callback failed for session %s", session_id)

        return sink

    def _remember(
        self, session_id: str, settings: KubernetesSettings, outputs: SessionOutputs
    ) -> None:
        """Keep what the last ``up`` of a session used and made, for :meth:`status`."""
        with self._guard:
            self._known[session_id] = (settings, outputs)
        write_record(self.work_dir(session_id), outputs=record_outputs(outputs))

    def _forget_session(self, session_id: str) -> None:
        """Drop what :meth:`_remember` kept once the session's stack is gone."""
        with self._guard:
            self._known.pop(session_id, None)

    def _recorded_session_id(self, name: str) -> str | None:
        """The raw session id in a stack's config or operation record here, if any."""
        work_dir = self.state_dir / "workspaces" / name
        try:
            text = (work_dir / f"Pulumi.{name}.yaml").read_text(encoding="utf-8")
            doc = yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError):
            doc = {}
        value = (doc.get("config") or {}).get(f"{PROJECT_NAME}:sessionId")
        if value is None:
            record = read_record(work_dir)
            outputs = outputs_of(record) if record is not None else None
            value = outputs.session_id if outputs is not None else None
        if isinstance(value, str) and stack_name(value) == name:
            return value
        return None


def _check_spec(spec: object) -> None:
    if not isinstance(spec, SessionSpec):
        raise TypeError(
            f"spec must be SessionSpec, got {type(spec).__name__}; "
            "build it with SessionSpec(session_id=..., ...)"
        )
