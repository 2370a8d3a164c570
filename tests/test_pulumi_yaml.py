"""``Pulumi.yaml`` against the Pulumi CLI's own project-file schema.

The CLI validates every project file against its JSON schema
(``sdk/go/common/workspace/project.json`` in pulumi/pulumi; ``object`` became
a config type in 3.186's schema, and the CLI checks stack values against
object types from 3.187, pulumi/pulumi#20129 and #20132). The schema is not
shipped in any PyPI package and is not copied here: point
``PULUMI_PROJECT_SCHEMA`` at a copy of that file (3.187 or newer) to run the
check; without it the test skips and says so. The types themselves are
checked against the option registry in tests/test_options.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from condukt_egress.automation import MIN_PULUMI_VERSION
from condukt_egress.spec import SESSION_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = os.environ.get("PULUMI_PROJECT_SCHEMA")


def project() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return loaded


@pytest.mark.skipif(
    not SCHEMA,
    reason="PULUMI_PROJECT_SCHEMA is not set; point it at pulumi/pulumi's "
    "sdk/go/common/workspace/project.json (CLI 3.187+) to validate Pulumi.yaml against it",
)
def test_pulumi_yaml_is_valid_for_the_cli() -> None:
    assert SCHEMA is not None
    schema = json.loads(Path(SCHEMA).read_text())
    assert "object" in schema["$defs"]["simpleConfigType"]["enum"], "schema older than 3.186"
    jsonschema.Draft202012Validator(schema).validate(project())


def test_every_object_and_array_key_has_a_real_type() -> None:
    config = project()["config"]
    for opt in SESSION_OPTIONS:
        if opt.kind in ("array", "object"):
            assert "type" in config[opt.config], f"{opt.config} has no declared type"
    assert config["policy"]["type"] == "object"
    assert config["dnsPodLabels"]["type"] == "object"
    assert config["unproxiedEgress"] == {
        **config["unproxiedEgress"],
        "type": "array",
        "items": {"type": "object"},
    }
    assert config["clusterCidrs"]["items"] == {"type": "string"}


def test_the_cli_floor_covers_object_types() -> None:
    assert MIN_PULUMI_VERSION >= (3, 187)
    # The docs state this floor, and no other (tests/test_docs.py).
    assert "3.187" in (ROOT / "Pulumi.yaml").read_text()
