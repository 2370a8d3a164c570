"""Write the go.mod of a wrapper module that builds one upstream tool.

Reads an upstream go.mod as JSON (``go mod edit -json``) on stdin and prints a
go.mod that requires the upstream module at its pinned version and repeats its
replace directives, since Go ignores the replaces of a dependency. A replace
that points into the upstream repository (``./staging/src/k8s.io/api``,
``../sdk``) cannot be followed from a published module, so it is pinned to the
published module of the same path at ``local_version`` instead (for
k8s.io/kubernetes, the staging modules' matching ``v0.x``); with no
``local_version`` such a replace is dropped and the upstream requirement stands.

Usage: e2e_wrapper_mod.py NAME MODULE VERSION GO_VERSION [LOCAL_VERSION]
"""

import json
import sys


def main() -> None:
    """Print the wrapper go.mod for the arguments and the upstream go.mod on stdin."""
    name, module, version, go_version = sys.argv[1:5]
    local_version = sys.argv[5] if len(sys.argv) > 5 else ""
    upstream = json.load(sys.stdin)
    lines = [
        f"module condukt-egress-e2e/{name}",
        "",
        f"go {go_version}",
        "",
        f"require {module} {version}",
        "",
    ]
    for replace in upstream.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        lhs = old["Path"] + (f" {old['Version']}" if old.get("Version") else "")
        if new["Path"].startswith(("./", "../")):
            if local_version:
                lines.append(f"replace {lhs} => {old['Path']} {local_version}")
            continue
        lines.append(f"replace {lhs} => {new['Path']} {new.get('Version', '')}".rstrip())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
