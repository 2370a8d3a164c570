"""The condukt-egress provider: ``SandboxEgress`` and ``SandboxWorkload`` for every language.

The Python language host starts it as ``python <this folder> <engine address>``
with the interpreter of ``./venv`` (see ``PulumiPlugin.yaml`` and
``requirements.txt``); it prints its gRPC port and serves ``GetSchema`` and
``Construct``. Everything it hosts lives in :mod:`condukt_egress.provider`.
"""

from pulumi.provider.experimental import component_provider_host

from condukt_egress.provider import PACKAGE, SandboxEgress, SandboxWorkload, version

if __name__ == "__main__":
    component_provider_host([SandboxEgress, SandboxWorkload], name=PACKAGE, version=version())
