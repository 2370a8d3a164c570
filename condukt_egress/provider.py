"""The components every Pulumi language uses: ``SandboxEgress`` and ``SandboxWorkload``.

``provider/__main__.py`` hosts them with
``pulumi.provider.experimental.component_provider_host``; ``pulumi package
add`` then generates a TypeScript, Go, C#, Java or YAML SDK from the schema
Pulumi infers from the annotations and docstrings below (checked in as
``provider/schema.json``). The analyzer reads annotations at run time, so
this module has no ``from __future__ import annotations``, uses enums where
the Python API has ``Literal`` and ``TypedDict`` objects where it accepts
unions. ``SandboxEgress``'s inputs are not written out here: the
:data:`SandboxEgressArgs` ``TypedDict`` is built from the fields of the
Python :class:`condukt_egress.SandboxEgressArgs` when the module loads, so
an option is declared once, in :mod:`condukt_egress.args`.

There is one implementation behind both surfaces. ``SandboxEgress`` builds
:class:`condukt_egress.SandboxEgressArgs` from its inputs (every check lives
there) and constructs the Python :class:`condukt_egress.SandboxEgress`, so the
engine receives the very registrations a Python program makes.
``SandboxWorkload`` is what another language calls instead of the Python-only
``inject()`` and transform: it injects a workload (declared as its child) or
a pod template (returned) through :func:`condukt_egress.transform.transform_props`,
the function the transform runs.
"""

import dataclasses
import enum
import importlib
import inspect
import json
import re
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any, Final, Literal, NotRequired, TypedDict, TypeVar

import pulumi
from pulumi.provider.experimental.component import ComponentProvider

from condukt_egress import args as py_args
from condukt_egress import component, dns, manifests, policy, transform, workloads
from condukt_egress.errors import ConfigError, FieldError
from condukt_egress.options import camel, document, options_of

__all__ = [
    "LANGUAGE_NAMES",
    "NAMESPACE",
    "PACKAGE",
    "WORKLOAD_TYPE_TOKEN",
    "CaKeyAlgorithm",
    "DecideRule",
    "DefaultAction",
    "DnsFilter",
    "EgressPolicy",
    "EgressProvider",
    "PolicyRule",
    "Protocol",
    "SandboxEgress",
    "SandboxEgressArgs",
    "SandboxWorkload",
    "SandboxWorkloadArgs",
    "TrustBundle",
    "UnproxiedEgress",
    "python_args",
    "schema",
    "session_args",
    "session_document",
    "version",
]

PACKAGE: Final = "condukt-egress"
"""The Pulumi package name: the first part of every type token."""

WORKLOAD_TYPE_TOKEN: Final = f"{PACKAGE}:index:SandboxWorkload"

NAMESPACE: Final = "pulumi"
"""The schema's namespace: the one Pulumi assumes for a package that sets none.

Set so that a git install generates the names a local path does: for a git
source without one, ``pulumi package add`` makes the repository owner the
namespace, and every SDK would be renamed after it (``@<owner>/...``).
"""

LANGUAGE_NAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "nodejs": {"packageName": "@pulumi/condukt-egress"},
    "python": {"packageName": "pulumi_condukt_egress"},
    "csharp": {"rootNamespace": "Pulumi"},
    "go": {"importBasePath": "example.com/pulumi-condukt-egress/sdk/go/conduktegress"},
    "java": {"basePackage": "com.pulumi"},
}
"""The generated SDK's package name in each language, pinned in the schema.

What the code generators derive for this package without a namespace (Go: as
``pulumi package add`` generates it, a module its ``replace`` points at), so
the names hold whatever namespace the CLI might set.
"""

T = TypeVar("T")


def version() -> str:
    """The package version the provider reports: the installed ``condukt-egress`` version."""
    return metadata.version(PACKAGE)


# --- enums (the Python API's Literals) ---------------------------------------

_E = TypeVar("_E", bound=enum.StrEnum)

_WIRE_ENUMS: Final[dict[Any, type[enum.StrEnum]]] = {}
"""The enums other languages send where the Python API takes a ``Literal``, by that Literal."""


def _mirrors(literal: Any) -> Callable[[type[_E]], type[_E]]:
    """Declare an enum as the schema form of the ``Literal`` alias ``literal``.

    The enum is written out (the schema analyzer reads each member's
    docstring from this file's source), but its values are the alias's or the
    module fails to import: the Literal stays the one place a value is added.
    (The order is the enum's own: the default first, as the schema shows.)
    """

    def register(cls: type[_E]) -> type[_E]:
        values, expected = sorted(m.value for m in cls), sorted(typing.get_args(literal))
        if values != expected:
            raise TypeError(
                f"provider.{cls.__name__} has values {values}, but its Literal has {expected}: "
                "give the enum one member per Literal value"
            )
        _WIRE_ENUMS[literal] = cls
        return cls

    return register


@_mirrors(py_args.TrustBundle)
class TrustBundle(enum.StrEnum):
    """What the workspace trusts."""

    SessionCa = "session-ca"
    """The session CA alone."""
    PublicRoots = "public-roots"
    """certifi's Mozilla roots followed by the session CA."""


@_mirrors(py_args.CaKeyAlgorithm)
class CaKeyAlgorithm(enum.StrEnum):
    """Key type of the per-session CA."""

    EcdsaP256 = "ecdsa-p256"
    """ECDSA on NIST P-256 (the default)."""
    EcdsaP384 = "ecdsa-p384"
    """ECDSA on NIST P-384."""
    Rsa2048 = "rsa-2048"
    """RSA, 2048 bits."""
    Rsa3072 = "rsa-3072"
    """RSA, 3072 bits."""
    Rsa4096 = "rsa-4096"
    """RSA, 4096 bits."""


@_mirrors(dns.DnsFilter)
class DnsFilter(enum.StrEnum):
    """The session's filtering resolver."""

    Policy = "policy"
    """Names the policy could allow resolve; the rest get NXDOMAIN (the default)."""
    Strict = "strict"
    """Names reaching decide resolve only if listed in dnsDecideHosts."""
    Off = "off"
    """No resolver: DNS tunnelling through the cluster resolver stays open."""


@_mirrors(py_args.Protocol)
class Protocol(enum.StrEnum):
    """Transport protocol of an unproxied destination."""

    TCP = "TCP"
    """TCP (the default)."""
    UDP = "UDP"
    """UDP."""
    SCTP = "SCTP"
    """SCTP."""


@_mirrors(policy.DefaultAction)
class DefaultAction(enum.StrEnum):
    """What the sidecar does with a host no rule matched."""

    Deny = "deny"
    """Refuse the connection (the default)."""
    Allow = "allow"
    """Let the connection through."""


# --- the session's inputs -------------------------------------------------------


class DecideRule(TypedDict):
    """Options of a decide rule, which hands every remaining host to the control-channel peer."""

    timeout_ms: NotRequired[int]
    """How long the sidecar waits for the peer's answer before it denies, in milliseconds."""


class PolicyRule(TypedDict):
    """One rule of an egress policy: exactly one of allow, deny or decide."""

    allow: NotRequired[list[str]]
    """Host patterns to allow: `*` matches one DNS label, `**` one or more across labels."""
    deny: NotRequired[list[str]]
    """Host patterns to deny, with the same syntax as allow."""
    decide: NotRequired[DecideRule]
    """Ask the control-channel peer (the events command's decider); matches every host."""


class EgressPolicy(TypedDict):
    """An egress policy in document form: the first matching rule wins."""

    rules: NotRequired[list[PolicyRule]]
    """Ordered rules; no rule may follow a decide rule."""
    default: NotRequired[DefaultAction]
    """What happens when no rule matched; deny unless set."""
    redact: NotRequired[list[str]]
    """Header-name globs the events command shows as [REDACTED]."""
    max_body_capture: NotRequired[int]
    """Body bytes per event the sidecar may capture, 0 to 16 MiB."""


class UnproxiedEgress(TypedDict):
    """A destination the session pod reaches without the proxy: no policy, no audit."""

    cidr: str
    """IPv4 network, e.g. 10.0.12.7/32."""
    ports: list[int]
    """Destination ports (1-65535); at least one. TCP 80 and 443 still go through the proxy."""
    protocol: NotRequired[Protocol]
    """TCP unless set."""


_WIRE_OBJECTS: Final[Mapping[Any, type]] = {
    policy.EgressPolicy: EgressPolicy,
    py_args.UnproxiedEgress: UnproxiedEgress,
}
"""The document form other languages send where the Python API takes a class."""


def _wire_type(hint: Any, name: str) -> Any:
    """The type the schema declares for a Python field of type ``hint``.

    ``Literal`` becomes the enum with the same values, a class the TypedDict
    of its document form, ``Sequence`` and ``Mapping`` a list and a dict; a
    union drops ``None`` and the document form beside its class, which is the
    one type left.

    Raises:
        TypeError: ``hint`` has no schema form yet; the message names the
            field and what to declare in this module.
    """
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if hint in (str, int, bool) or hint is Any:
        return hint
    if origin is Literal:
        if hint in _WIRE_ENUMS:
            return _WIRE_ENUMS[hint]
    elif origin in (typing.Union, types.UnionType):
        rest = [p for p in params if p is not type(None) and p != Mapping[str, Any]]
        if len(rest) == 1:
            return _wire_type(rest[0], name)
    elif origin is abc.Sequence:
        return types.GenericAlias(list, (_wire_type(params[0], name),))
    elif origin is abc.Mapping and params[0] is str:
        return types.GenericAlias(dict, (str, _wire_type(params[1], name)))
    elif hint in _WIRE_OBJECTS:
        return _WIRE_OBJECTS[hint]
    raise TypeError(
        f"SandboxEgressArgs.{name}: {hint} has no schema form; declare its enum (for a "
        "Literal) or document-form TypedDict in condukt_egress/provider.py"
    )


def _default(f: "dataclasses.Field[Any]") -> Any:
    """The default of a dataclass field, ``dataclasses.MISSING`` if it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _inputs_of(cls: type) -> Any:
    """The ``TypedDict`` of the provider's inputs: the fields of the dataclass ``cls``.

    Built when the module loads, so an option added to or changed in
    :mod:`condukt_egress.args` reaches every language with no edit here.
    Every key is plain (the Python API derives names from it at preview);
    one without a default is required. The descriptions are set by
    :class:`EgressProvider`, which reads them where they are declared.
    """
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        wire = _wire_type(hints[f.name], f.name)
        fields[f.name] = NotRequired[wire] if _default(f) is not dataclasses.MISSING else wire
    made: Any = TypedDict(cls.__name__, fields)  # type: ignore[misc]
    made.__doc__ = f"The inputs of SandboxEgress: the fields of {cls.__module__}.{cls.__name__}."
    return made


if typing.TYPE_CHECKING:
    SandboxEgressArgs: typing.TypeAlias = Mapping[str, Any]
else:
    SandboxEgressArgs = _inputs_of(py_args.SandboxEgressArgs)


def _plain(value: Any) -> Any:
    """Enum members as their values, recursively: the document form the Python API reads."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _plain_fields(cls: type) -> frozenset[str]:
    """The fields of ``cls`` the schema declares plain (not ``pulumi.Input``)."""
    hints = typing.get_type_hints(cls)
    return frozenset(
        name
        for name, hint in hints.items()
        if pulumi.Output not in {typing.get_origin(a) for a in typing.get_args(hint)}
    )


def python_args(inputs: Mapping[str, Any]) -> py_args.SandboxEgressArgs:
    """The Python :class:`~condukt_egress.SandboxEgressArgs` of ``SandboxEgress`` inputs.

    The provider maps the schema's camelCase names to the Python field names
    and enum values to members before the component sees them; this turns the
    members back into values and hands everything to the one validator.

    Raises:
        ConfigError: A value the Python API needs known at preview is an
            Output, or any check of ``SandboxEgressArgs`` failed (the field,
            camelCase as in the schema, and the fix are named).
        PolicyError: The policy is invalid.
    """
    plain = _plain_fields(SandboxEgressArgs)
    for name, value in inputs.items():
        if name in plain and transform.holds_output(value):
            raise ConfigError(
                camel(name),
                "must be known when the program runs (a plain value, not another "
                "resource's output): names, labels and manifests are derived from it "
                "at preview",
            )
    try:
        return py_args.SandboxEgressArgs(**_plain(dict(inputs)))
    except FieldError as exc:
        # Named as the program wrote it: trustBundle, not trust_bundle.
        raise exc.renamed(camel(exc.root)) from None


SESSION_CA_FINGERPRINT: Final = "ca_fingerprint"
"""Key of the session CA's fingerprint in the ``session`` document, beside the args."""
SESSION_SECRET_NAME: Final = "secret_name"  # noqa: S105 - a key, no secret
"""Key of the session Secret's name in the ``session`` document, beside the args."""


def session_document(
    args: py_args.SandboxEgressArgs, ca: manifests.CaBinding | None = None
) -> dict[str, Any]:
    """``args`` as JSON-ready values (document form) that :func:`session_args` reads back.

    With ``ca``, the document also carries the session CA's fingerprint and
    the Secret's name (:func:`session_ca`), which SandboxWorkload binds the
    pods to, so a new CA or policy rolls them, as the Python transform does.
    """
    out = {f.name: document(getattr(args, f.name)) for f in dataclasses.fields(args)}
    if ca is not None:
        out[SESSION_CA_FINGERPRINT] = ca.fingerprint
        out[SESSION_SECRET_NAME] = ca.secret_name
    return out


def session_ca(document: Any) -> manifests.CaBinding | None:
    """The CA binding (fingerprint and Secret name) a ``session`` document carries, if any."""
    if not isinstance(document, Mapping):
        return None
    fingerprint, secret = document.get(SESSION_CA_FINGERPRINT), document.get(SESSION_SECRET_NAME)
    if not isinstance(fingerprint, str) or not isinstance(secret, str):
        return None
    return manifests.CaBinding(fingerprint, secret)


def session_args(document: Any) -> py_args.SandboxEgressArgs:
    """The session :func:`session_document` described, validated again.

    Raises:
        ConfigError: ``document`` is not a ``SandboxEgress``'s ``session``
            output, or fails a check of ``SandboxEgressArgs``.
    """
    fields = {f.name for f in dataclasses.fields(py_args.SandboxEgressArgs)}
    ca_keys = {SESSION_CA_FINGERPRINT, SESSION_SECRET_NAME}
    if not isinstance(document, Mapping) or not set(document) <= fields | ca_keys:
        raise ConfigError(
            "session",
            "must be the session output of a SandboxEgress, passed unchanged "
            "(e.g. session: egress.session)",
        )
    values = {k: _freeze(v) for k, v in document.items() if k not in ca_keys}
    return py_args.SandboxEgressArgs(**values)


def _freeze(value: Any) -> Any:
    """Integral floats (the wire's numbers) back to ints, recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_freeze(v) for v in value]
    return value


class SandboxEgress(component.SandboxEgress):
    """One sandbox session's egress control.

    A per-session CA, the sidecar's Secret (CA and policy) and a NetworkPolicy
    that leaves the sidecar as the pod's only way out. Give its session output
    to SandboxWorkload to inject the sidecar into a workload.
    """

    # The Python component's outputs, declared again for their schema descriptions.
    secret_name: pulumi.Output[str]
    """Name of the session Secret (CA, CA key, bundle, policy); ends with a hash of its content."""
    network_policy_name: pulumi.Output[str]
    """Name of the NetworkPolicy selecting the session pods."""
    ca_cert_pem: pulumi.Output[str]
    """The session CA certificate (PEM) the workspace trusts."""
    ca_fingerprint: pulumi.Output[str]
    """SHA-256 of the session CA (hex), in the sidecar's env: a new CA rolls the pods."""
    pod_labels: dict[str, str]
    """Labels every session pod carries; the NetworkPolicy selects them."""
    session: pulumi.Output[dict[str, Any]]
    """The validated session options, for SandboxWorkload's session input; pass it unchanged."""

    def __init__(
        self,
        name: str,
        args: SandboxEgressArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Declare the session with the Python component, from the inputs of another language.

        Args:
            name: The resource name.
            args: The inputs, with Python field names (the provider maps them).
            opts: The options of the Construct request.
        """
        super().__init__(name, python_args(args), opts)
        # Derived from the URNs, so whatever consumes it depends on the Secret
        # and the NetworkPolicy; it carries the CA fingerprint and the Secret's
        # name, so a new CA or policy rolls the workloads SandboxWorkload declares.
        self.session = pulumi.Output.all(
            self.secret.urn, self.network_policy.urn, self.ca_fingerprint, self.secret_name
        ).apply(
            lambda values: session_document(self.args, manifests.CaBinding(values[2], values[3]))
        )


# --- workloads ----------------------------------------------------------------


class SandboxWorkloadArgs(TypedDict):
    """The inputs of SandboxWorkload: a session, and a workload or a pod template."""

    session: pulumi.Input[dict[str, Any]]
    """The session output of the SandboxEgress whose sidecar to inject, passed unchanged."""
    workload: NotRequired[pulumi.Input[dict[str, Any]]]
    """A workload manifest (apiVersion, kind, metadata, spec) to declare, injected, as a child."""
    pod_template: NotRequired[pulumi.Input[dict[str, Any]]]
    """A pod template (metadata, spec) to return injected in podTemplate; nothing is declared."""


def _workload_type(manifest: Mapping[str, Any]) -> workloads.Workload:
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ConfigError(
            "workload",
            "needs apiVersion and kind as plain strings, e.g. apiVersion: apps/v1, "
            f"kind: Deployment; got {api_version!r} and {kind!r}",
        )
    api = api_version if "/" in api_version else f"core/{api_version}"
    workload = workloads.workload_of(f"kubernetes:{api}:{kind}")
    if workload is None or workload.variant:
        raise ConfigError(
            "workload.kind",
            f"{api_version} {kind} is not a workload condukt-egress injects; use one of "
            f"{', '.join(workloads.WORKLOAD_KINDS)} (apps/v1, batch/v1 or v1)",
        )
    return workload


def _resource_class(workload: workloads.Workload) -> Callable[..., pulumi.CustomResource]:
    group, api_version = workload.api.split("/")
    module = importlib.import_module(f"pulumi_kubernetes.{group}.{api_version}")
    cls: Callable[..., pulumi.CustomResource] = getattr(module, workload.kind)
    return cls


def _injected_template(
    template: Any, name: str, args: py_args.SandboxEgressArgs, ca: manifests.CaBinding | None
) -> Any:
    """A pod template injected as a Deployment's would be, errors named after the template."""
    as_deployment = workloads.Workload("apps/v1", "Deployment", "")
    try:
        injected = workloads.inject_workload(
            {"metadata": {}, "spec": {"template": template}}, as_deployment, name, args
        )
    except ConfigError as exc:
        field = exc.field.replace(f"Deployment {name!r} spec.template", "podTemplate", 1)
        raise ConfigError(field, exc.message) from None
    out: dict[str, Any] = injected["spec"]["template"]
    if ca is not None:
        out = {**out, "spec": manifests.with_ca_binding(out["spec"], ca)}
    return out


class SandboxWorkload(pulumi.ComponentResource):
    """A workload with a session's sidecar injected.

    What languages other than Python use instead of inject() and the transform.
    Give it a workload manifest to declare it, injected and ordered after the
    session's Secret and NetworkPolicy, as its child; or a pod template to get
    it back injected.
    """

    manifest: pulumi.Output[dict[str, Any]] | None
    """The injected workload as declared (when a workload was given)."""
    pod_template: pulumi.Output[dict[str, Any]] | None
    """The injected pod template (when a pod template was given)."""

    def __init__(
        self,
        name: str,
        args: SandboxWorkloadArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Inject the workload or pod template of ``args`` with its session's sidecar.

        Args:
            name: The resource name; a workload is declared with the same name.
            args: The inputs, with Python field names.
            opts: The options of the Construct request.

        Raises:
            ConfigError: Neither or both of workload and pod template were
                given, the kind is not a workload, or injection refused the
                spec (the field and the fix are named).
        """
        given = [key for key in ("workload", "pod_template") if args.get(key) is not None]
        if len(given) != 1:
            raise ConfigError(
                "workload",
                "give exactly one of workload (declared as a child) and podTemplate "
                f"(returned injected); got {' and '.join(given) or 'neither'}",
            )
        super().__init__(WORKLOAD_TYPE_TOKEN, name, None, opts)
        session = args["session"]
        session_opts = transform.lift(session, self._reported(session_args))
        if "workload" in given:
            self.manifest = self._declare(name, args["workload"], session, session_opts)
        else:
            inject = self._reported(_injected_template)
            self.pod_template = pulumi.Output.all(
                session_opts, args["pod_template"], transform.lift(session, session_ca)
            ).apply(lambda values: inject(values[1], name, values[0], values[2]))
        self.register_outputs({})

    def _reported(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn``, logging a refusal as this resource's error before it propagates.

        A refusal inside ``apply`` (the session is an Output) reaches the engine
        wrapped in the SDK's serialization error; the log shows it as written.
        """

        def run(*args: Any) -> T:
            try:
                return fn(*args)
            except FieldError as exc:
                pulumi.log.error(str(exc), resource=self)
                raise

        return run

    def _declare(
        self, name: str, manifest: Any, session: Any, session_opts: Any
    ) -> pulumi.Output[dict[str, Any]]:
        if isinstance(manifest, pulumi.Output) or not isinstance(manifest, Mapping):
            raise ConfigError(
                "workload",
                "must be an object whose apiVersion and kind are known when the program "
                "runs, e.g. {apiVersion: apps/v1, kind: Deployment, metadata: ..., spec: ...}",
            )
        workload = _workload_type(manifest)
        unknown = set(manifest) - {"apiVersion", "kind", "metadata", "spec"}
        if unknown:
            raise ConfigError(
                "workload",
                f"unknown key(s) {sorted(unknown)}; a workload has apiVersion, kind, "
                "metadata and spec",
            )
        props = {"metadata": manifest.get("metadata"), "spec": manifest.get("spec")}
        inject = self._reported(transform.transform_props)
        ca = transform.lift(session, session_ca)
        both = pulumi.Output.all(session_opts, ca)
        injected: pulumi.Output[dict[str, Any]] = both.apply(
            lambda values: inject(props, workload, name, values[0], values[1])
        )
        _resource_class(workload)(
            name,
            metadata=injected.apply(lambda p: p["metadata"]),
            spec=injected.apply(lambda p: p["spec"]),
            opts=pulumi.ResourceOptions(
                parent=self,
                # The session output depends on the Secret and the NetworkPolicy.
                depends_on=pulumi.Output.from_input(session).apply(lambda _: []),
            ),
        )
        api_version = workload.api.removeprefix("core/")
        return injected.apply(lambda p: {"apiVersion": api_version, "kind": workload.kind, **p})


# The analyzer copies class docstrings verbatim; without their indentation they read as Markdown.
for _documented in (
    TrustBundle,
    CaKeyAlgorithm,
    DnsFilter,
    Protocol,
    DefaultAction,
    DecideRule,
    PolicyRule,
    EgressPolicy,
    UnproxiedEgress,
    SandboxEgress,
    SandboxWorkload,
):
    _documented.__doc__ = inspect.cleandoc(_documented.__doc__ or "")


class EgressProvider(ComponentProvider):
    """The provider ``provider/__main__.py`` serves: both components, and their schema.

    What ``component_provider_host`` would build, with the descriptions of
    the stack config options taken from the option registry, where each is
    declared once, those of the Python-only inputs from the ``Attributes``
    section of ``SandboxEgressArgs``, and every input's default from it; and
    with the namespace and every SDK's names pinned (:data:`NAMESPACE`,
    :data:`LANGUAGE_NAMES`).
    """

    def __init__(self) -> None:
        super().__init__([SandboxEgress, SandboxWorkload], PACKAGE, NAMESPACE, version())
        assert self.schema is not None  # noqa: S101 - the component provider always has one
        described = json.loads(self.schema)
        for language, names in LANGUAGE_NAMES.items():
            described["language"][language].update(names)
        inputs = described["resources"][f"{PACKAGE}:index:SandboxEgress"]["inputProperties"]
        registry = {opt.name: opt for opt in options_of(py_args.SandboxEgressArgs)}
        documented = _attribute_docs(py_args.SandboxEgressArgs)
        for f in dataclasses.fields(py_args.SandboxEgressArgs):
            prop = inputs[camel(f.name)]
            opt = registry.get(f.name)
            if opt is None:
                if f.name not in documented:
                    raise TypeError(
                        f"SandboxEgressArgs.{f.name} is undocumented: describe it in the "
                        "Attributes section of the class docstring (the schema shows that text)"
                    )
                default = json.dumps(document(_default(f)))
                prop["description"] = f"{documented[f.name]} Default: {default}."
            elif not opt.required:
                prop["description"] = f"{opt.help} Default: {opt.doc_default}."
            else:
                prop["description"] = opt.help
        self.schema = json.dumps(_as_the_cli_reads_it(described))


def _as_the_cli_reads_it(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` in the form the Pulumi CLI holds it (``pulumi package get-schema`` prints).

    The CLI's package model has no description on an array's items or a
    map's values, omits empty lists and always has a ``config`` section;
    served in that form, the checked-in schema is byte for byte what the CLI
    reads from the provider.
    """

    def element(node: Any) -> Any:
        if isinstance(node, dict):
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    node[key].pop("description", None)
            for key in [k for k, v in node.items() if v == [] and k in _OMITTED_WHEN_EMPTY]:
                del node[key]
            for value in node.values():
                element(value)
        return node

    out: dict[str, Any] = element(schema)
    out.setdefault("config", {})
    return out


_OMITTED_WHEN_EMPTY: Final = frozenset({"required", "requiredInputs", "dependencies"})


def _attribute_docs(cls: type) -> dict[str, str]:
    """The entries of the ``Attributes:`` section of ``cls``'s (Google-style) docstring.

    Each joined into one line, with reST's double backquotes as Markdown's
    single ones: the one text of a field that has no option in the registry.
    """
    docs: dict[str, list[str]] = {}
    lines = iter((inspect.getdoc(cls) or "").splitlines())
    for line in lines:
        if line == "Attributes:":
            break
    for line in lines:
        if line and not line.startswith(" "):
            break  # the next section, or prose after the last one
        entry = re.match(r" {4}(\w+): (.*)", line)
        if entry:
            docs[entry[1]] = [entry[2]]
        elif line.strip() and docs:
            docs[next(reversed(docs))].append(line.strip())
    return {name: " ".join(words).replace("``", "`") for name, words in docs.items()}


def schema() -> dict[str, Any]:
    """The package schema the provider serves, as ``GetSchema`` returns it."""
    loaded: dict[str, Any] = json.loads(EgressProvider().schema or "{}")
    return loaded


def _main(argv: Sequence[str] = ()) -> None:
    """Print the schema (``python -m condukt_egress.provider > provider/schema.json``)."""
    del argv
    print(json.dumps(schema(), indent=2, sort_keys=True))


if __name__ == "__main__":
    _main()
