"""The option registry is the one place options live: every surface agrees with it.

Each stack option is declared once, as field metadata on
:class:`~condukt_egress.args.SessionOptions` (plus ``workspace_image`` on
:class:`~condukt_egress.spec.SessionSpec`). The stack program, ``SessionSpec``
and ``render`` derive from it; ``Pulumi.yaml`` is written by hand and checked
here, default by default. The configuration reference in the docs is generated
from it (``docs/hooks/reference.py``, checked in tests/test_docs.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from condukt_egress.args import SandboxEgressArgs, SessionOptions
from condukt_egress.cli import cli, from_flags
from condukt_egress.cli import render as render_cli
from condukt_egress.options import Option, option, options_of
from condukt_egress.program import spec_from_config
from condukt_egress.spec import ARGS_OPTIONS, CONFIG_KEYS, SESSION_OPTIONS, SessionSpec

ROOT = Path(__file__).resolve().parent.parent


def pulumi_yaml_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    return config


class FakeConfig:
    """Just enough of ``pulumi.Config`` for the program's reader, from stack-file values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def get(self, key: str) -> Any:
        value = self.values.get(key)
        return None if value is None else str(value)

    def get_bool(self, key: str) -> Any:
        return self.values.get(key)

    def get_int(self, key: str) -> Any:
        return self.values.get(key)

    def get_object(self, key: str) -> Any:
        return self.values.get(key)


def test_every_stack_option_is_declared_once_in_order() -> None:
    assert tuple(pulumi_yaml_config()) == CONFIG_KEYS
    assert len(set(CONFIG_KEYS)) == len(CONFIG_KEYS)
    assert {o.flag for o in SESSION_OPTIONS} <= set(render_cli.FIELD_FLAGS.values())
    # SandboxEgressArgs shares the declarations, it does not copy them.
    args_fields = {f.name: f for f in dataclasses.fields(SandboxEgressArgs)}
    for f in dataclasses.fields(SessionOptions):
        assert args_fields[f.name].metadata is f.metadata


def test_pulumi_yaml_types_and_defaults_match_the_registry() -> None:
    declared = pulumi_yaml_config()
    for opt in SESSION_OPTIONS:
        entry = declared[opt.config]
        # Every key is typed (objects and arrays of objects since CLI 3.187).
        declared_type = {k: entry[k] for k in ("type", "items") if k in entry}
        assert declared_type == opt.project_type, opt.config
        assert entry.get("description"), opt.config
        assert ("default" not in entry) == opt.required, opt.config
    # The program reading Pulumi.yaml's defaults builds the same session as the
    # declared defaults: no default drifts between the two.
    defaults = {k: v["default"] for k, v in declared.items() if "default" in v}
    from_yaml = spec_from_config(FakeConfig({"sessionId": "42", **defaults}))  # type: ignore[arg-type]
    assert from_yaml.program_config() == SessionSpec("42").program_config()


def test_no_default_drifts_between_the_surfaces() -> None:
    """Every surface, given nothing but the session id, means the same session."""
    expected = SessionSpec("42")
    # The stack program with only sessionId set.
    assert spec_from_config(FakeConfig({"sessionId": "42"})) == expected  # type: ignore[arg-type]
    # The Python API.
    assert SandboxEgressArgs(session_id="42") == expected.args
    # render with only --session-id: its flags add no defaults of their own.
    flags = {o.name: None for o in SESSION_OPTIONS} | {"session_id": "42"}
    assert from_flags(SessionSpec, SESSION_OPTIONS, flags) == expected
    # The defaults the help texts show are the declared ones.
    help_text = " ".join(CliRunner().invoke(cli, ["render", "--help"]).output.split())
    for opt in SESSION_OPTIONS:
        if not opt.required and opt.name != "workload":  # render's -f: documents, no default
            assert f"[default: {opt.doc_default}]" in help_text, opt.flag
    # SessionSpec passes every option on; its stack config names every key.
    assert set(ARGS_OPTIONS) | {"workspace_image", "workload"} == {o.name for o in SESSION_OPTIONS}
    assert tuple(expected.program_config()) == CONFIG_KEYS


@pytest.mark.parametrize("opt", SESSION_OPTIONS, ids=lambda o: o.config)
def test_fix_hints_name_the_key(opt: Option) -> None:
    assert opt.config in opt.config_fix
    assert opt.example in opt.config_fix


def test_an_example_is_the_default_unless_declared() -> None:
    @dataclasses.dataclass(frozen=True)
    class Demo:
        port: int = dataclasses.field(default=15001, metadata=option("A port."))
        labels: dict[str, str] = dataclasses.field(
            default_factory=lambda: {"k8s-app": "kube-dns"}, metadata=option("Labels.")
        )
        hosts: Sequence[str] = dataclasses.field(
            default=(), metadata=option("Hosts.", example="[pypi.org]", parse=str)
        )

    assert [o.example for o in options_of(Demo)] == ["15001", "{k8s-app: kube-dns}", "[pypi.org]"]


@pytest.mark.parametrize("default", [(), None, ""])
def test_an_option_with_nothing_to_show_must_declare_an_example(default: Any) -> None:
    @dataclasses.dataclass(frozen=True)
    class Demo:
        hosts: Any = dataclasses.field(default=default, metadata=option("Hosts."))

    with pytest.raises(
        TypeError, match=r"option hosts needs an example: .*give option\(\.\.\., example=\.\.\.\)"
    ):
        options_of(Demo)
