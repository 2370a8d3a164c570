"""Config errors under ``pulumi up``: one line naming the key and the fix, no traceback.

The Python language host (``pulumi-language-python-exec``) and the Automation
API's inline server (``pulumi/automation/_server.py``, ``except RunError``) log
a :class:`pulumi.RunError` as ``error: <message>`` and print no traceback;
any other exception is printed as "Program failed with an unhandled
exception" and its stack trace. So every error the stack program raises about
config must be a ``RunError`` whose one-line message names the key.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from condukt_egress.errors import ConfigError, PolicyError
from condukt_egress.program import StackConfigError, StackPolicyError, session_program
from tests.pulumi_harness import Recorder, run

BAD_HOST_AT_2_0 = {
    "rules": [{"deny": ["*.internal.example.com"]}, {"allow": ["ok.com"]}, {"allow": ["x.com:443"]}]
}


def failure(config: dict[str, Any]) -> BaseException:
    recorder = Recorder()
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is what is checked
        run(session_program, config=config, recorder=recorder)
    assert recorder.registrations == [], "a partial session was declared"
    return info.value


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({}, "config sessionId"),
        ({"sessionId": "1", "namespace": "Bad_NS"}, "config namespace"),
        ({"sessionId": "1", "allowPlainHttp": "maybe"}, "config allowPlainHttp"),
        ({"sessionId": "1", "caValidityHours": "a day"}, "config caValidityHours"),
        ({"sessionId": "1", "workspaceImage": "py thon"}, "config workspaceImage"),
        ({"sessionId": "1", "dnsPodLabels": {"k8s-app": "kube dns"}}, "config dnsPodLabels"),
        ({"sessionId": "1", "policy": ["allow"]}, "config policy"),
    ],
)
def test_config_errors_are_run_errors_of_one_line(config: dict[str, Any], key: str) -> None:
    error = failure(config)
    assert isinstance(error, StackConfigError)
    assert isinstance(error, pulumi.RunError), "else the engine prints a traceback"
    assert isinstance(error, ConfigError), "callers catching ConfigError still do"
    assert error.field.startswith(key), "the key, with the path inside it if any"
    assert str(error).startswith(f"{error.field}: ")
    assert "\n" not in str(error)
    assert "pulumi config set" in str(error) or "Pulumi.<stack>.yaml" in str(error)


def test_policy_error_names_the_config_key_path_to_change() -> None:
    error = failure({"sessionId": "1", "policy": BAD_HOST_AT_2_0})
    assert isinstance(error, StackPolicyError)
    assert isinstance(error, pulumi.RunError)
    assert isinstance(error, PolicyError)
    assert error.field == "config policy.rules[2].allow[0]"
    assert str(error) == (
        "config policy.rules[2].allow[0]: 'x.com:443' has a port; the sidecar matches the host "
        "name without it (the NetworkPolicy decides the ports); write the host name only: "
        "'x.com'. Change it with `pulumi config set --path 'policy.rules[2].allow[0]' <value>` "
        "or in Pulumi.<stack>.yaml"
    )


def test_policy_structure_error_names_the_rule() -> None:
    error = failure({"sessionId": "1", "policy": {"rules": [{"allw": ["a.com"]}]}})
    assert isinstance(error, StackPolicyError)
    assert error.field == "config policy.rules[0]"
    assert "did you mean 'allow'?" in str(error)
