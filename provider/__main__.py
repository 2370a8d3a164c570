"""The condukt-egress provider: ``SandboxEgress`` and ``SandboxWorkload`` for every language.

The Python language host starts it as ``python <this folder> <engine address>``
with the interpreter of ``./venv`` (see ``PulumiPlugin.yaml`` and
``requirements.txt``); it prints its gRPC port and serves ``GetSchema`` and
``Construct``. This is ``component_provider_host`` with the schema
descriptions of :class:`condukt_egress.provider.EgressProvider`; everything it
hosts lives in :mod:`condukt_egress.provider`.
"""

import sys

from pulumi.provider import main

from condukt_egress.provider import EgressProvider

if __name__ == "__main__":
    main(EgressProvider(), sys.argv[1:])
