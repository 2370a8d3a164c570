"""``condukt-egress explain``: what a policy does with each host, and why.

Evaluates a policy file (``-`` reads it from stdin) exactly like the sidecar
(:meth:`EgressPolicy.evaluate`), so a policy can be debugged before any pod
exists. One line per host; with ``-o json`` (or ``--json``) one object per
line, ``{"host", "action", "rule": {"index", "kind"} | null, "reason"}``
(``rule`` is null when the default applied, as in the ``events`` command's
output). Always exits 0 once the policy loads.

Example:
    $ condukt-egress explain --policy examples/policy.yaml api.github.com example.org
    api.github.com: allow by rules[1] (allow)
    example.org: deny by default: default_deny
"""

from __future__ import annotations

import json
from typing import Any

import click

from condukt_egress.cli import InputFile, cli, format_option, policy_warnings
from condukt_egress.policy import EgressPolicy, Verdict

__all__ = ["explain", "verdict_line", "verdict_object"]


def verdict_object(host: str, verdict: Verdict) -> dict[str, Any]:
    """The ``--json`` form of one verdict."""
    rule = None
    if verdict.rule_index is not None:
        rule = {"index": verdict.rule_index, "kind": verdict.rule_kind}
    return {"host": host, "action": verdict.action, "rule": rule, "reason": verdict.reason}


def verdict_line(host: str, verdict: Verdict, policy: EgressPolicy) -> str:
    """The text form of one verdict: action, the rule or the default, and why.

    Example:
        ``db.internal.example.com: deny by rules[0] (deny): matched_deny_list``
    """
    if verdict.rule_index is None:
        line = f"{host}: {verdict.action} by default"
    else:
        line = f"{host}: {verdict.action} by rules[{verdict.rule_index}] ({verdict.rule_kind})"
    if verdict.action == "decide":
        line += (
            f": the control-channel peer is asked; no answer within "
            f"{policy.decide_timeout_ms} ms denies"
        )
    elif verdict.reason:
        line += f": {verdict.reason}"
    if verdict.rule_index is None and (":" in host or "/" in host or host.endswith(".")):
        line += " (note: patterns match a bare host name, never a scheme, port, path or final dot)"
    return line


@cli.command("explain")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=InputFile(),
    metavar="FILE",
    help="Egress policy document (.yaml, .yml or .json; - reads YAML or JSON from stdin).",
)
@format_option(("text", "json"), "One readable line, or one JSON object, per host.")
@click.option("--json", "as_json", is_flag=True, help="Shorthand for --format json.")
@click.argument("hosts", nargs=-1, required=True, metavar="HOST...")
def explain(*, policy_file: str, fmt: str, as_json: bool, hosts: tuple[str, ...]) -> None:
    """Show what the policy does with each HOST: the verdict and the rule or the default."""
    policy = EgressPolicy.load(policy_file)
    policy_warnings(policy, policy_file if policy_file != "-" else "stdin")
    for host in hosts:
        verdict = policy.evaluate(host)
        if as_json or fmt == "json":
            click.echo(json.dumps(verdict_object(host, verdict), ensure_ascii=False))
        else:
            click.echo(verdict_line(host, verdict, policy))
