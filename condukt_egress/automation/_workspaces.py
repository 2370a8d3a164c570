"""Where a session's stack lives: its workspace directory, its stack config and the CLI.

Each session gets its own workspace directory (``<state_dir>/workspaces/<stack>``
holding ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``) and every CLI call gets its
environment from the workspace options, never from a changed ``os.environ``,
so many sessions run at once from one process, each isolated.
:class:`StackWorkspaces` is the part of :class:`SessionStacks` that makes
and reads them; :class:`~condukt_egress.automation._runner.EngineRunner` runs
the engine in them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import yaml
from pulumi.automation import (
    CommandError,
    LocalWorkspace,
    LocalWorkspaceOptions,
    ProjectBackend,
    ProjectRuntimeInfo,
    ProjectSettings,
    PulumiCommand,
    Stack,
    StackAlreadyExistsError,
    StackNotFoundError,
)

from condukt_egress.automation._cli import find_cli, set_secrets
from condukt_egress.automation._errors import SessionOperationError, error_lines
from condukt_egress.automation._spec import (
    KUBERNETES_CONFIG_KEYS,
    PROJECT_NAME,
    KubernetesSettings,
    SessionSpec,
    secret_config,
    stack_config,
    stack_config_json,
    stack_name,
)
from condukt_egress.automation._status import outputs_of, read_record
from condukt_egress.program import session_program

__all__ = ["StackWorkspaces", "default_state_dir", "kubernetes_settings"]

_PROJECT_DIR: Final = "_project"  # the workspace of list() and reaping; stacks are session-*
_PLUGINS: Final = (("kubernetes", "pulumi_kubernetes"), ("tls", "pulumi_tls"))


def kubernetes_settings(value: object, default: KubernetesSettings) -> KubernetesSettings:
    """``value`` if given, else ``default``; a TypeError naming the fix for anything else."""
    if value is None:
        return default
    if not isinstance(value, KubernetesSettings):
        raise TypeError(
            f"kubernetes must be KubernetesSettings, got {type(value).__name__}; "
            "build it with KubernetesSettings(context=...)"
        )
    return value


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/condukt-egress``, or ``~/.local/state/condukt-egress``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "condukt-egress"


def _stack_file(work_dir: str | os.PathLike[str], name: str) -> Path:
    """The stack's config file in its workspace (``Pulumi.<stack>.yaml``)."""
    return Path(work_dir) / f"Pulumi.{name}.yaml"


def _read_stack_file(work_dir: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """The stack's config file as a document; ``{}`` while there is none.

    Read directly rather than through ``pulumi config --json``, which costs a
    CLI process and decrypts every secret; the keys and the secrets-provider
    fields are what is wanted here.
    """
    try:
        text = _stack_file(work_dir, name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return yaml.safe_load(text) or {}


def _write_if_changed(path: Path, text: str) -> None:
    """Replace ``path`` atomically, so a concurrent reader never sees a torn file."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class StackWorkspaces:
    """Session workspaces, stack config and the ``pulumi`` CLI of one :class:`SessionStacks`.

    The attributes are set by :meth:`SessionStacks.__init__`.
    """

    state_dir: Path
    backend_url: str
    kubernetes: KubernetesSettings
    secrets_provider: str | None
    _file_backend: bool  # our own file backend, under state_dir
    _extra_env: dict[str, str]
    _secret_env: dict[str, str]
    _pulumi_home: str | None
    _pulumi_root: str | None
    _install_plugins: bool
    _logger: logging.Logger
    _cli_lock: threading.Lock
    _command: PulumiCommand | None
    _plugins_lock: threading.Lock
    _plugins_ready: bool

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

    def _backend_dir(self) -> Path | None:
        """The directory of a ``file://`` backend (None for other backends)."""
        if not self.backend_url.startswith("file://"):
            return None
        return Path(self.backend_url[len("file://") :].split("?", 1)[0]).expanduser()

    def workspace_options(self, session_id: str) -> LocalWorkspaceOptions:
        """The Automation API options of a session's workspace (CLI filled in on use)."""
        return LocalWorkspaceOptions(
            work_dir=str(self.work_dir(session_id)),
            pulumi_home=self._pulumi_home,
            program=session_program,
            env_vars=self.environment(),
            secrets_provider=self.secrets_provider,
        )

    def pulumi_version(self) -> str:
        """Find and check the ``pulumi`` CLI now, e.g. when a service starts.

        Raises:
            PulumiCliError: Not found, not runnable, or older than 3.203.
        """
        return str(self._cli().version or "unknown")

    def _cli(self) -> PulumiCommand:
        """The ``pulumi`` CLI, found and version-checked once."""
        with self._cli_lock:
            if self._command is None:
                self._command = find_cli(self._pulumi_root)
            return self._command

    def _project_workspace(self) -> LocalWorkspace:
        """A workspace of the project outside any session, for listing and reading stacks."""
        project_dir = self.state_dir / "workspaces" / _PROJECT_DIR
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
        if not _stack_file(workspace.work_dir, name).exists():
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

    def _create_or_select(self, workspace: LocalWorkspace, name: str) -> Stack:
        """The session's stack, made if it is new: one CLI call in the usual case.

        The SDK's ``create_or_select`` tries ``stack select`` first, a wasted
        CLI process (about 0.2 s) for every new session. A stack whose config
        file is not in its workspace is almost always new, so that one is
        created first; one another replica made is then selected instead.
        """
        if _stack_file(workspace.work_dir, name).exists():
            return Stack.create_or_select(name, workspace)
        try:
            return Stack.create(name, workspace)
        except StackAlreadyExistsError:
            return Stack.select(name, workspace)

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
        return kubernetes_settings(kubernetes, self.kubernetes)

    def _preview_config(
        self, workspace: LocalWorkspace, name: str, spec: SessionSpec, settings: KubernetesSettings
    ) -> Path:
        """A private copy of the stack's config file holding ``spec``'s config.

        The copy keeps the stack's secrets-provider fields (salt or encrypted
        key), so the CLI encrypts the spec's secrets as it would in the real
        file; provider keys the spec no longer wants are dropped from it.
        """
        work_dir = Path(workspace.work_dir)
        doc = _read_stack_file(work_dir, name)
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
        current = _read_stack_file(stack.workspace.work_dir, stack.name).get("config") or {}
        stack.set_all_config_json(stack_config_json(spec, settings))
        self._set_secrets(Path(stack.workspace.work_dir), stack.name, secret_config(spec, settings))
        stale: list[str] = [
            key for key in KUBERNETES_CONFIG_KEYS if key in current and key not in wanted
        ]
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

    def _recorded_session_id(self, name: str) -> str | None:
        """The raw session id in a stack's config or operation record here, if any."""
        work_dir = self.state_dir / "workspaces" / name
        try:
            doc = _read_stack_file(work_dir, name)
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
