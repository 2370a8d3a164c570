"""``SandboxEgress``: the Pulumi component declaring one session's egress control.

This is the only module that declares resources. It mints the per-session CA
with pulumi-tls and declares the Secret and the NetworkPolicy that the pure
builders in :mod:`condukt_egress.manifests` describe. Workloads get the
sidecar through :meth:`SandboxEgress.workload_options` (the transform of
:mod:`condukt_egress.transform` plus a dependency on the Secret and the
NetworkPolicy, so Pulumi creates them first and deletes them last), through
:meth:`SandboxEgress.register_stack_transform`, or through the pure
:meth:`SandboxEgress.inject`.

Example:
    >>> egress = SandboxEgress("s-42", SandboxEgressArgs(session_id="42"))  # doctest: +SKIP
    >>> k8s.batch.v1.Job("agent", spec=job_spec,
    ...     opts=egress.workload_options())  # doctest: +SKIP
"""

# No ``from __future__ import annotations``: ``condukt_egress.provider`` hosts a
# subclass for other languages, and Pulumi's schema analyzer evaluates the class
# annotations of its whole MRO at run time.
import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from condukt_egress import manifests
from condukt_egress.args import SandboxEgressArgs
from condukt_egress.ca import CA_ALLOWED_USES, CA_ORGANIZATION, key_spec
from condukt_egress.errors import ConfigError, EgressError, FieldError
from condukt_egress.options import expect_args
from condukt_egress.transform import workload_transform

__all__ = ["TYPE_TOKEN", "ResolvedInputError", "SandboxEgress"]

TYPE_TOKEN: Final = "condukt-egress:index:SandboxEgress"  # noqa: S105 - a type, no secret


class ResolvedInputError(EgressError, pulumi.RunError):
    """An Input-valued arg (see :data:`~condukt_egress.args.INPUT_FIELDS`) resolved to a bad value.

    Raised when the Output resolves, from the SDK's ``apply``: a
    :class:`pulumi.RunError`, so ``pulumi up`` prints this one line, and not
    a ``ValueError``, which the SDK would re-wrap in serialisation errors.

    Attributes:
        field: The field at fault, e.g. ``namespace`` or ``policy.rules[0].allow[0]``.
        message: What is wrong and how to fix it.
        error: The :class:`~condukt_egress.errors.ConfigError` or
            :class:`~condukt_egress.errors.PolicyError` the validation raised.
    """

    def __init__(self, error: FieldError) -> None:
        self.error = error
        self.field = error.field
        self.message = error.message
        super().__init__(f"{error.field}: {error.message} (the value came from an Output)")


class SandboxEgress(pulumi.ComponentResource):
    """One session's CA, Secret and NetworkPolicy, and the way to inject its sidecar.

    Attributes:
        args: The validated session options.
        names: Names and labels derived from the session id (plain values).
        pod_labels: Labels every session pod must carry (plain dict).
        ca_key: The CA's pulumi-tls private key (its PEM outputs are secrets).
        ca_cert: The CA's pulumi-tls self-signed certificate.
        secret: The Secret with ``policy.json``, ``ca.pem``, ``ca-key.pem``, ``bundle.pem``
            and (client compatibility profile) ``truststore.p12`` in its ``data``.
        network_policy: The NetworkPolicy selecting the session pods.
        secret_name: Name of the Secret, as an Output that depends on it:
            ``condukt-egress-<base>-<hash of its content>``, new with every
            policy or CA (see :func:`~condukt_egress.manifests.secret_name`).
        network_policy_name: Name of the NetworkPolicy, as an Output that depends on it.
        ca_cert_pem: The CA certificate PEM.
        ca_fingerprint: SHA-256 of the CA certificate (hex); every workload's
            sidecar carries it in its env, so a new CA replaces or rolls the pods.
    """

    # ``args`` and ``names`` are set in __init__ but not declared here: every
    # class-level annotation is an output in the multi-language schema.
    pod_labels: dict[str, str]
    secret_name: pulumi.Output[str]
    network_policy_name: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    ca_fingerprint: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: SandboxEgressArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Declare the session's resources as children of this component.

        Args:
            name: The Pulumi resource name of the component.
            args: The session; validated when constructed, so bad input has
                already failed before any resource is registered.
            opts: Options of the component.
        """
        expect_args(args, SandboxEgressArgs)
        super().__init__(TYPE_TOKEN, name, None, opts)
        self.args = args
        self.names = args.names
        self.pod_labels = dict(self.names.pod_labels)
        child = pulumi.ResourceOptions(parent=self)

        self.ca_key, self.ca_cert = self._ca(name, args, child)
        self.ca_cert_pem = self.ca_cert.cert_pem

        # Input-valued args (an Output namespace, a policy host from another
        # resource) resolve, and are validated, before anything uses them.
        deferred = args.deferred
        self.resolved_args: pulumi.Output[SandboxEgressArgs] | None = None
        if deferred:
            self.resolved_args = pulumi.Output.all(
                **{key: pulumi.Output.from_input(value) for key, value in deferred.items()}
            ).apply(functools.partial(_resolve, args))
        resolved = self.resolved_args

        def with_args(build: Callable[[SandboxEgressArgs], Any]) -> Any:
            return build(args) if resolved is None else resolved.apply(build)

        self.secret = self._secret(name, args, resolved)
        policy = with_args(manifests.network_policy_manifest)
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_part(policy, "metadata"),
            spec=_part(policy, "spec"),
            opts=child,
        )
        self.secret_name = self.secret.metadata.apply(lambda m: str(m["name"]))
        self.ca_fingerprint = self.ca_cert.cert_pem.apply(manifests.ca_fingerprint)
        self._transform = workload_transform(
            args,
            self._workload_dependencies,
            manifests.CaBinding(self.ca_fingerprint, self.secret_name),
            resolved,
        )
        self.network_policy_name = self.network_policy.metadata.apply(lambda m: str(m["name"]))
        self.register_outputs(
            {
                "secretName": self.secret_name,
                "networkPolicyName": self.network_policy_name,
                "podLabels": self.pod_labels,
                "caCertPem": self.ca_cert_pem,
                "caFingerprint": self.ca_fingerprint,
            }
        )

    @staticmethod
    def _ca(
        name: str, args: SandboxEgressArgs, child: pulumi.ResourceOptions
    ) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
        """The session CA: its key and self-signed certificate (pulumi-tls)."""
        spec = key_spec(args.ca_key_algorithm)
        key = tls.PrivateKey(
            f"{name}-ca-key",
            algorithm=spec.algorithm,
            ecdsa_curve=spec.ecdsa_curve,
            rsa_bits=spec.rsa_bits,
            opts=child,
        )
        cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            set_subject_key_id=True,
            allowed_uses=list(CA_ALLOWED_USES),
            validity_period_hours=args.ca_validity_hours,
            early_renewal_hours=args.ca_early_renewal_hours,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=args.names.ca_common_name,
                organization=CA_ORGANIZATION,
            ),
            opts=child,
        )
        return key, cert

    def _secret(
        self,
        name: str,
        args: SandboxEgressArgs,
        resolved: pulumi.Output[SandboxEgressArgs] | None,
    ) -> k8s.core.v1.Secret:
        """The Secret the sidecar reads: the CA, its key, the policy and the trust files."""
        # The sidecar needs PKCS#8; private_key_pem is SEC1 for ECDSA keys.
        string_data: pulumi.Output[dict[str, str]] = pulumi.Output.secret(
            pulumi.Output.all(
                self.ca_cert.cert_pem, self.ca_key.private_key_pem_pkcs8, resolved
            ).apply(lambda v: manifests.secret_data(v[2] or args, v[0], v[1]))
        )
        # Binary files (the JVM trust store) go base64 in ``data``; public
        # certificates, but secret like the rest so the preview stays short.
        binary_data: pulumi.Output[dict[str, str]] | None = None
        if args.client_compat:
            binary_data = pulumi.Output.secret(
                pulumi.Output.all(self.ca_cert.cert_pem, resolved).apply(
                    lambda v: manifests.secret_binary_data(v[1] or args, v[0])
                )
            )
        # Named after its content (CA key aside, so the name is no Pulumi secret):
        # a new policy or CA is a new Secret, which Pulumi creates before it
        # replaces the pods that mount it, and deletes after them. A fixed name
        # made it replace the immutable Secret delete-before-replace, under the pod.
        secret_name = pulumi.Output.all(self.ca_cert.cert_pem, resolved).apply(
            lambda v: manifests.secret_name(v[1] or args, v[0])
        )
        secret = manifests.secret_manifest(args, string_data, binary_data, name=secret_name)
        metadata: Any = pulumi.Output.all(secret_name, resolved).apply(
            lambda v: manifests.object_metadata(v[1] or args, v[0])
        )
        return k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=metadata,
            type=secret["type"],
            immutable=secret["immutable"],
            data=secret.get("data"),
            string_data=secret["stringData"],
            opts=pulumi.ResourceOptions(
                parent=self, additional_secret_outputs=["data", "stringData"]
            ),
        )

    def inject(self, pod_spec: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``pod_spec`` with this session's sidecar injected and hardened.

        Pure: see :func:`condukt_egress.manifests.inject`. Use Kubernetes
        (camelCase) field names, as in YAML. The Secret's name is known only
        with the CA, so the volumes name its prefix alone (no Secret has it):
        declare the workload with :meth:`workload_options`, whose transform
        binds them to the Secret (and the sidecar to the CA's fingerprint).

        Raises:
            ConfigError: Some args are Outputs (see :data:`INPUT_FIELDS`), so
                the pure injection has no values yet: use
                :meth:`workload_options`, whose transform injects once they resolve.
        """
        if self.args.deferred:
            raise ConfigError(
                ", ".join(self.args.deferred),
                "is an Output, so inject() (pure, immediate) cannot use it; declare the "
                "workload with opts=egress.workload_options(), which injects once it resolves",
            )
        return manifests.inject(pod_spec, self.args)

    @property
    def transform(self) -> pulumi.ResourceTransform:
        """The resource transform that injects this session into any workload.

        Pass it as ``ResourceOptions(transforms=[egress.transform])`` on a
        Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob
        (or on a component or chart, to reach its children): the pod template
        gets the session label and the sidecar, the containers are hardened,
        bypass configurations are refused, and the workload depends on the
        Secret and NetworkPolicy. Other resources pass through untouched.
        See :mod:`condukt_egress.transform`.
        """
        return self._transform

    def workload_options(self) -> pulumi.ResourceOptions:
        """Options that make a workload (or a component/chart of them) a session workload.

        They carry :attr:`transform` and a dependency on the Secret and the
        NetworkPolicy, so Pulumi creates those first and deletes them last.
        Merge them into your own with ``pulumi.ResourceOptions.merge``.

        Example:
            >>> opts = egress.workload_options()  # doctest: +SKIP
            >>> k8s.batch.v1.Job("agent", spec=..., opts=opts)  # doctest: +SKIP
        """
        return pulumi.ResourceOptions(
            depends_on=self._workload_dependencies(), transforms=[self.transform]
        )

    def register_stack_transform(self) -> None:
        """Inject this session into every workload declared after this call, stack-wide.

        For programs where every pod of the stack is a session pod (one stack
        per session). The engine may ignore a dependency added by a stack
        transform, so give each workload ``depends_on=[egress]`` (or use
        :meth:`workload_options`) when the creation order matters: without it
        a pod can start before its NetworkPolicy exists.
        """
        pulumi.runtime.register_resource_transform(self.transform)

    def _workload_dependencies(self) -> list[pulumi.Resource]:
        return [self.secret, self.network_policy]


def _resolve(args: SandboxEgressArgs, values: Mapping[str, Any]) -> SandboxEgressArgs:
    try:
        return args.resolved(values)
    except FieldError as exc:
        raise ResolvedInputError(exc) from None


def _part(manifest: Any, key: str) -> Any:
    """``manifest[key]``, through ``apply`` when the manifest is an Output."""
    if isinstance(manifest, pulumi.Output):
        return manifest.apply(lambda m: m[key])
    return manifest[key]
