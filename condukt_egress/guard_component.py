"""``SandboxGuard``: the guard's admission policies as one Pulumi component.

Declare it once, in the platform stack that owns the cluster (not in the
per-session stacks): it registers the ``ValidatingAdmissionPolicy`` and
``ValidatingAdmissionPolicyBinding`` objects that
:func:`condukt_egress.guard.guard_manifests` describes. Each binding depends
on its policy, so it is created after it and deleted before it.

Example:
    >>> guard = SandboxGuard("guard", SandboxGuardArgs(
    ...     allowed_network_policies=["default-deny"]))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from condukt_egress.guard import SandboxGuardArgs, guard_manifests
from condukt_egress.options import expect_args

__all__ = ["TYPE_TOKEN", "SandboxGuard"]

TYPE_TOKEN: Final = "condukt-egress:index:SandboxGuard"  # noqa: S105 - a type, no secret


class SandboxGuard(pulumi.ComponentResource):
    """The guard's policies and bindings, for the namespaces and rules of its args.

    Attributes:
        args: The validated guard options.
        policies: The ``ValidatingAdmissionPolicy`` resources, one per rule.
        bindings: Their ``ValidatingAdmissionPolicyBinding`` resources, same order.
        policy_names: Names of the policies (plain values, known at preview).
    """

    args: SandboxGuardArgs
    policies: list[k8s.admissionregistration.v1.ValidatingAdmissionPolicy]
    bindings: list[k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding]
    policy_names: list[str]

    def __init__(
        self,
        name: str,
        args: SandboxGuardArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Declare one policy and one binding per rule as children of this component.

        Args:
            name: The Pulumi resource name of the component.
            args: Namespaces, rules and accepted session options; the defaults
                bind namespaces labelled ``egress.condukt.dev/guard=enforce``.
            opts: Options of the component.
        """
        args = SandboxGuardArgs() if args is None else args
        expect_args(args, SandboxGuardArgs)
        super().__init__(TYPE_TOKEN, name, None, opts)
        self.args = args
        self.policies, self.bindings, self.policy_names = [], [], []
        objects = guard_manifests(args)
        for policy, binding in zip(objects[::2], objects[1::2], strict=True):
            rule = policy["metadata"]["name"]
            declared = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
                f"{name}-{rule}",
                metadata=policy["metadata"],
                spec=policy["spec"],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.policies.append(declared)
            self.bindings.append(
                k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                    f"{name}-{rule}-binding",
                    metadata=binding["metadata"],
                    spec=binding["spec"],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[declared]),
                )
            )
            self.policy_names.append(rule)
        self.register_outputs({"policyNames": self.policy_names})
