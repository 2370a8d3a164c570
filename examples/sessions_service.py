"""A service-style use of the Automation API: three sessions at once, then gone.

Starts three sandbox sessions in parallel threads (one Pulumi stack each),
prints their outputs, and destroys them, whatever happens in between.

Needs the ``pulumi`` CLI (3.203 or newer) on PATH and a passphrase for the stack
secrets. Without ``--context``/``--kubeconfig`` the manifests are rendered into
a directory instead of applied, so no cluster is needed::

    export PULUMI_CONFIG_PASSPHRASE=change-me
    python examples/sessions_service.py --render-dir ./rendered
    python examples/sessions_service.py --context my-cluster --namespace agents
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from condukt_egress.automation import (
    KubernetesSettings,
    SessionNotFoundError,
    SessionOutputs,
    SessionSpec,
    SessionStacks,
)
from condukt_egress.errors import EgressError

POLICY = {
    "rules": [
        {"deny": ["*.internal.example.com"]},
        {"allow": ["api.github.com", "pypi.org", "files.pythonhosted.org"]},
    ],
    "default": "deny",
}


def parse() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="stack state (default: a temp dir)")
    parser.add_argument("--render-dir", type=Path, help="render manifests here (no cluster)")
    parser.add_argument("--context", help="kubeconfig context to apply to")
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: the provider's)")
    parser.add_argument("--namespace", default="default")
    return parser.parse_args()


def kubernetes_settings(args: argparse.Namespace) -> KubernetesSettings:
    """A cluster when one is named, else a render directory (no cluster needed)."""
    if args.context or args.kubeconfig:
        return KubernetesSettings(kubeconfig=args.kubeconfig, context=args.context)
    render = args.render_dir or Path(tempfile.mkdtemp(prefix="condukt-rendered-"))
    return KubernetesSettings(render_yaml_to_directory=render.resolve())


def show(out: SessionOutputs) -> None:
    """Print what a service hands on: where the pod is and what to trust."""
    print(f"session {out.session_id!r} (stack {out.stack_name})")
    print(f"  pod {out.namespace}/{out.pod_name}  labels {dict(out.pod_labels)}")
    print(f"  secret {out.secret_name}  network policy {out.network_policy_name}")
    print(f"  control port {out.control_port}  CA {out.ca_cert_pem.splitlines()[1][:32]}...")


def main() -> int:
    """Start three sessions at once, print them, destroy them."""
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="condukt-state-"))
    try:
        stacks = SessionStacks(state, kubernetes=kubernetes_settings(args))
        print(f"pulumi {stacks.pulumi_version()}, state in {state}")
    except EgressError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    specs = [
        SessionSpec(f"example-session-{n}", namespace=args.namespace, policy=POLICY)
        for n in (1, 2, 3)
    ]
    try:
        with ThreadPoolExecutor(len(specs)) as pool:
            for out in pool.map(stacks.up, specs):
                show(out)
        print("sessions:", [s.session_id for s in stacks.list()])
    except EgressError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        with ThreadPoolExecutor(len(specs)) as pool:
            for spec, error in zip(specs, pool.map(partial(end, stacks), specs), strict=True):
                if error:
                    print(f"destroy {spec.session_id}: {error}", file=sys.stderr)
    return 0


def end(stacks: SessionStacks, spec: SessionSpec) -> str | None:
    """Destroy a session and remove its stack; the error text if that failed."""
    try:
        stacks.destroy(spec.session_id)
    except SessionNotFoundError:
        return None  # never started
    except EgressError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
