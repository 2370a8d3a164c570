"""One version everywhere: pyproject.toml, provider/schema.json, GetPluginInfo and the git tag.

A git install (`pulumi package add github.com/<owner>/condukt-egress.git/provider@v0.2.0`)
writes the tag's version into the schema the SDK is generated from, while the
provider reports the installed package's version in ``GetPluginInfo`` and the
checked-in schema. If the tag and ``pyproject.toml`` disagree, the SDK asks
the engine for a provider version that never answers. These tests fail on
any disagreement; ``docs/languages.md`` says how to release.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from condukt_egress import provider

ROOT = Path(__file__).resolve().parent.parent
SEMVER_TAG = re.compile(r"^v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$")


def _project_version(pyproject: str) -> str:
    version: str = tomllib.loads(pyproject)["project"]["version"]
    return version


def test_schema_and_plugin_info_carry_the_pyproject_version() -> None:
    declared = _project_version((ROOT / "pyproject.toml").read_text())
    # An editable install keeps the version it was installed with.
    assert provider.version() == declared, (
        f"the installed condukt-egress is {provider.version()}, pyproject.toml says {declared}: "
        "reinstall (pip install -e .) and regenerate provider/schema.json"
    )
    checked_in = json.loads((ROOT / "provider" / "schema.json").read_text())
    assert checked_in["version"] == declared, (
        "provider/schema.json: regenerate it after a version bump "
        "(.venv/bin/python -m condukt_egress.provider > provider/schema.json)"
    )


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no tags to check")
    return subprocess.run(
        [git, "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )


def tag_mismatches(tags: list[str], read: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with each release tag, given its pyproject.toml and schema.json.

    ``read`` maps a tag to the text of those two files at the tag (a file
    missing there is absent). A tag must be ``v`` and a semantic version, and
    both files must carry that version.
    """
    wrong = []
    for tag in tags:
        match = SEMVER_TAG.match(tag)
        if match is None:
            wrong.append(f"{tag}: a release tag is v<major>.<minor>.<patch>, e.g. v0.2.0")
            continue
        files = read[tag]
        declared = _project_version(files["pyproject.toml"])
        if declared != match[1]:
            wrong.append(f"{tag}: pyproject.toml there says {declared}")
        schema = files.get("provider/schema.json")
        if schema is not None and json.loads(schema)["version"] != match[1]:
            wrong.append(f"{tag}: provider/schema.json there says {json.loads(schema)['version']}")
    return wrong


def test_every_release_tag_is_the_version_its_commit_declares() -> None:
    listed = _git("tag", "--list", "v*")
    assert listed.returncode == 0, listed.stderr
    tags = listed.stdout.split()
    read: dict[str, dict[str, str]] = {}
    for tag in tags:
        read[tag] = {}
        for path in ("pyproject.toml", "provider/schema.json"):
            shown = _git("show", f"{tag}:{path}")
            if shown.returncode == 0:
                read[tag][path] = shown.stdout
    assert tag_mismatches(tags, read) == []


def test_a_tag_that_disagrees_with_its_commit_is_named_with_what_it_says() -> None:
    def files(version: str) -> dict[str, str]:
        return {
            "pyproject.toml": f'[project]\nname = "condukt-egress"\nversion = "{version}"\n',
            "provider/schema.json": json.dumps({"version": version}),
        }

    read = {
        "v0.1.0": files("0.1.0"),
        "v0.2.0": files("0.1.0"),
        "v0.3": files("0.3.0"),
        "v0.4.0": {**files("0.4.0"), "provider/schema.json": json.dumps({"version": "0.3.0"})},
    }
    assert tag_mismatches(list(read), read) == [
        "v0.2.0: pyproject.toml there says 0.1.0",
        "v0.2.0: provider/schema.json there says 0.1.0",
        "v0.3: a release tag is v<major>.<minor>.<patch>, e.g. v0.2.0",
        "v0.4.0: provider/schema.json there says 0.3.0",
    ]
