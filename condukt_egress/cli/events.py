r"""``condukt-egress events``: watch a sidecar's traffic live and answer its decisions.

A thin layer over :class:`~condukt_egress.control.ControlClient`: it builds a
target from the flags, prints each frame as a readable line or a JSON object,
and prints a summary on stderr when it stops (``--count``, ``--duration``,
the channel closing with ``--no-reconnect``, Ctrl-C or SIGTERM; all exit 0).

The records and the ``--format json`` schema (version 1) are
:mod:`condukt_egress.eventview`'s, which does the filtering, redaction,
formatting and counting; this module reads the flags and runs the client.

Example:
    condukt-egress events --namespace agents --session-id run-42 --kind request_denied
    condukt-egress events --connect 127.0.0.1:15002 --format json --decider mypkg.policy:decide
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import click

from condukt_egress._text import printable
from condukt_egress.cli import InputFile, cli, format_option, policy_warnings
from condukt_egress.contract import DEFAULT_CONTROL_PORT, EVENT_KINDS
from condukt_egress.control import ControlClient, Decider, Target, TcpTarget
from condukt_egress.errors import PolicyError
from condukt_egress.eventview import EventView
from condukt_egress.redaction import Redactor

__all__ = ["events"]

_KINDS: Final = (*EVENT_KINDS, "decision_request", "decision")
_SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _as_target(command: Callable[..., None]) -> Callable[..., None]:
    """Hand ``command`` the flags that say where the sidecar is as one :class:`Target`.

    The flags are :func:`_target`'s parameters, declared once there.
    """

    @functools.wraps(command)
    def run(**flags: Any) -> None:
        where = {name: flags.pop(name) for name in inspect.signature(_target).parameters}
        command(_target(**where), **flags)

    return run


@cli.command("events")
@click.option(
    "--connect", metavar="HOST:PORT", help="A reachable control port (e.g. kubectl port-forward)."
)
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help="Namespace of the session pod [default: the kube context's namespace].",
)
@click.option("--pod", metavar="NAME", help="The session pod, by name.")
@click.option("--session-id", metavar="ID", help="The session pod, by its session label.")
@click.option("--context", metavar="NAME", help="Kubeconfig context.")
@click.option(
    "--kubeconfig",
    type=InputFile(stdin=False),
    help="Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, in-cluster].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_CONTROL_PORT,
    show_default=True,
    help="The sidecar's control port inside the pod.",
)
@format_option(("text", "json"), "One readable line, or one JSON object (schema v1), per record.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(_KINDS),
    help="Show only these kinds (repeatable).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="GLOB",
    help="Show only hosts matching the policy glob (* one label, ** any); repeatable.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N shown records.")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after S seconds."
)
@click.option("--decider", metavar="MODULE:FUNCTION", help="Answer decision requests.")
@click.option(
    "--decide-timeout-ms",
    type=click.IntRange(min=2),
    help="The sidecar's decide_timeout_ms [default: --policy's, else 5000].",
)
@click.option(
    "--cache-ttl",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to reuse a decider's answer per host, port and scheme (0: ask every time).",
)
@click.option("--no-reconnect", is_flag=True, help="Stop when the channel drops.")
@click.option(
    "--policy",
    "policy_file",
    type=InputFile(),
    help="Policy file whose redact patterns (and decide timeout) apply (- reads stdin).",
)
@click.option("--show-secrets", is_flag=True, help="Show credential headers unredacted.")
@_as_target
def events(
    target: Target,
    *,
    fmt: str,
    kinds: Sequence[str],
    hosts: Sequence[str],
    count: int | None,
    duration: float | None,
    decider: str | None,
    decide_timeout_ms: int | None,
    cache_ttl: float,
    no_reconnect: bool,
    policy_file: str | None,
    show_secrets: bool,
) -> None:
    """Show live what a session's workspace tries to reach; answer `decide` requests.

    Reach the sidecar with --connect HOST:PORT, or with --pod or --session-id
    (in -n NS, else the kube context's namespace) through the Kubernetes
    port-forward API. Records go to
    stdout as readable lines, or as JSON objects with --format json; the
    summary goes to stderr. Credentials in headers and query strings are shown
    as [REDACTED] unless --show-secrets.
    """
    redact: tuple[str, ...] = ()
    if policy_file is not None:
        policy = _load_policy(policy_file)
        redact = tuple(policy.redact)
        decide_timeout_ms = decide_timeout_ms or policy.decide_timeout_ms
    view = EventView(
        fmt=fmt,
        redactor=Redactor(redact, enabled=not show_secrets),
        kinds=frozenset(kinds),
        hosts=tuple(hosts),
        count=count,
    )
    options: dict[str, Any] = {"cache_ttl": cache_ttl, "reconnect": not no_reconnect}
    if decide_timeout_ms is not None:
        options["decide_timeout_ms"] = decide_timeout_ms
    client = ControlClient(
        target,
        decider=_load_decider(decider) if decider else None,
        on_notice=_notice,
        on_decision=view.decision,
        on_reconnect=view.gap,
        **options,
    )
    # Everything loaded so far lives as long as the process: keep the cyclic
    # GC from walking it again on every collection while frames stream in.
    gc.collect()
    gc.freeze()
    asyncio.run(_watch(client, view, duration))


# -- flags ---------------------------------------------------------------------------


def _target(  # noqa: PLR0917
    connect: str | None,
    namespace: str | None,
    pod: str | None,
    session_id: str | None,
    context: str | None,
    kubeconfig: str | None,
    port: int,
) -> Target:
    if connect is not None:
        for flag, value in (
            ("--namespace", namespace),
            ("--pod", pod),
            ("--session-id", session_id),
            ("--context", context),
            ("--kubeconfig", kubeconfig),
        ):
            if value is not None:
                raise click.UsageError(
                    f"{flag} is for the port-forward path; drop it or drop --connect"
                )
        host, port_number = _parse_host_port(connect)
        return TcpTarget(host, port_number)
    if pod is None and session_id is None:
        raise click.UsageError(
            "say where the sidecar is: --connect HOST:PORT, or --pod NAME or --session-id ID "
            "(in -n NS, else the kube context's namespace)"
        )
    if pod is not None and session_id is not None:
        raise click.UsageError("give one of --pod NAME and --session-id ID, not both")
    if namespace is None:
        namespace = _context_namespace(kubeconfig, context)
    from condukt_egress.portforward import PortForwardTarget  # noqa: PLC0415  (kubernetes is slow)

    return PortForwardTarget(
        namespace=namespace,
        pod=pod,
        session_id=session_id,
        port=port,
        kubeconfig=kubeconfig,
        context=context,
    )


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl would use without ``-n``: the context's, else ``default``.

    Inside a pod with no kubeconfig, the service account's namespace.
    """
    from kubernetes.config import kube_config  # noqa: PLC0415  (kubernetes is slow)

    try:
        contexts, active = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
    except Exception:  # no or unreadable kubeconfig: in-cluster, or the port-forward says why
        try:
            return _SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
        except OSError:
            return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    if chosen is None:
        raise click.BadParameter(
            f"no context {context!r} in the kubeconfig; `kubectl config get-contexts` lists them",
            param_hint="'--context'",
        )
    namespace = (chosen.get("context") or {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def _parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{text!r} is not HOST:PORT; write e.g. 127.0.0.1:{DEFAULT_CONTROL_PORT} "
            f"or [::1]:{DEFAULT_CONTROL_PORT}",
            param_hint="'--connect'",
        )
    return host, int(port)


def _load_policy(path: str) -> Any:
    from condukt_egress.policy import EgressPolicy  # noqa: PLC0415

    try:
        policy = EgressPolicy.load(path)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="'--policy'") from exc
    policy_warnings(policy, "--policy")
    return policy


def _load_decider(spec: str) -> Decider:
    module_name, sep, attr = spec.partition(":")
    hint = "'--decider'"
    if not sep or not module_name or not attr:
        raise click.BadParameter(
            f"{spec!r} is not MODULE:FUNCTION; write e.g. mypkg.policy:decide", param_hint=hint
        )
    try:
        target: Any = _import_decider_module(module_name)
    except Exception as exc:
        raise click.BadParameter(
            f"cannot import module {module_name!r}: {exc}; "
            "check the name and that it is in the current directory or on PYTHONPATH",
            param_hint=hint,
        ) from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.BadParameter(
                f"module {module_name!r} has no attribute {attr!r}", param_hint=hint
            ) from None
    if not callable(target):
        raise click.BadParameter(
            f"{spec} is a {type(target).__name__}, not a function taking a decision request",
            param_hint=hint,
        )
    decider: Decider = target
    return decider


def _import_decider_module(name: str) -> ModuleType:
    """Import ``name``, taking only its top-level module or package from the current directory.

    Deciders next to you import as with ``python -m``, but the current
    directory is never put on ``sys.path``: a ``kubernetes.py`` lying there
    must not be imported, with the operator's credentials, in place of the
    real client. The decider's own imports come from the installed packages
    (make it a package to ship helpers alongside it).
    """
    top = name.partition(".")[0]
    if top not in sys.modules:
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[top] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[top]
                raise
    return importlib.import_module(name)


# -- running ---------------------------------------------------------------------------


def _notice(message: str) -> None:
    click.echo(f"condukt-egress: {printable(message)}", err=True)


async def _watch(client: ControlClient, view: EventView, duration: float | None) -> None:
    """Run until a stop condition; print the summary unless nothing ever connected."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    started = loop.time()
    reader = asyncio.ensure_future(client.run(view.frame))
    stopper = asyncio.ensure_future(stop.wait())
    counted = asyncio.ensure_future(view.finished.wait())
    waiting = (reader, stopper, counted)
    try:
        await asyncio.wait(waiting, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Close the client first, while the connection is still open: it lets the
        # decisions under way finish and sends them, then ends the reader.
        await client.aclose()
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    error = None if reader.cancelled() else reader.exception()
    if error is not None and client.stats.connects == 0:
        raise error
    view.summary(client.stats, loop.time() - started)
    if error is not None:
        raise error
