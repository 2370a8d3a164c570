import importlib
import inspect
import pkgutil
from pathlib import Path

import condukt_egress
from condukt_egress import errors


def test_all_is_sorted_and_complete() -> None:
    exported = condukt_egress.__all__
    # isort style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    public = {
        name
        for name, value in vars(condukt_egress).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    # Loaded on first use (PEP 562), so a process that never needs it stays light.
    lazy = {name for name in dir(condukt_egress) if name not in vars(condukt_egress)}
    assert set(exported) == public | lazy
    for name in exported:
        assert getattr(condukt_egress, name) is not None


def test_every_module_declares_all_and_exports_exist() -> None:
    for info in pkgutil.walk_packages(condukt_egress.__path__, "condukt_egress."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None)
        assert names is not None, f"{info.name} has no __all__"
        for name in names:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_error_tree_has_one_base() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.EgressError)
    assert issubclass(errors.PolicyError, ValueError)
    assert issubclass(errors.ConfigError, ValueError)


def test_package_is_typed() -> None:
    assert (Path(condukt_egress.__file__).parent / "py.typed").exists()
