"""The drivers take from the core only its public driver contract
(:mod:`rocketmq_proto.driver`) and the user's names (:mod:`rocketmq_proto`),
never import each other (gevent's is built on the blocking driver), and export
one list of names. Checked on the source."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from rocketmq_proto import driver

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ("rocketmq_asyncio", "rocketmq_sync", "rocketmq_gevent")
ALLOWED_CORE = {"rocketmq_proto", "rocketmq_proto.driver"}
#: The other drivers a driver may import.
ALLOWED_DRIVERS = {
    "rocketmq_asyncio": set(),
    "rocketmq_sync": set(),
    "rocketmq_gevent": {"rocketmq_sync"},
}


def imports_of(source: str) -> list[tuple[int, str]]:
    """(line, module) of each absolute import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def contract_breaches(package: str, source: str) -> list[str]:
    """What in ``source`` (a module of ``package``) breaks the contract."""
    breaches = []
    for line, module in imports_of(source):
        top = module.split(".")[0]
        if top == "rocketmq_proto" and module not in ALLOWED_CORE:
            breaches.append(f"line {line}: imports {module}")
        elif top in DRIVERS and top != package and top not in ALLOWED_DRIVERS[package]:
            breaches.append(f"line {line}: imports the driver {module}")
    return breaches


@pytest.mark.parametrize(
    "path",
    sorted(p for d in DRIVERS for p in (ROOT / d).glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_driver_module_imports_only_the_contract(path: Path) -> None:
    assert contract_breaches(path.parent.name, path.read_text()) == []


def test_the_check_sees_a_private_import_and_a_driver_import() -> None:
    source = (
        "from rocketmq_proto.flows.session import ClientCore\n"
        "import rocketmq_sync._future\n"
        "from rocketmq_proto.driver import Call\n"
        "from rocketmq_proto import Message\n"
    )
    assert contract_breaches("rocketmq_asyncio", source) == [
        "line 1: imports rocketmq_proto.flows.session",
        "line 2: imports the driver rocketmq_sync._future",
    ]
    assert contract_breaches("rocketmq_gevent", "import rocketmq_sync._future\n") == []


def test_every_effect_of_the_union_is_in_the_contract() -> None:
    effects = typing.get_args(driver.Effect)
    assert len(effects) >= 10
    for effect in effects:
        assert effect.__name__ in driver.__all__
        assert getattr(driver, effect.__name__) is effect


def test_every_name_of_the_contract_is_defined() -> None:
    for name in driver.__all__:
        assert hasattr(driver, name), name


@pytest.mark.parametrize("package", DRIVERS)
def test_drivers_export_one_list(package: str) -> None:
    module = importlib.import_module(package)
    extras = {"Future"} if package != "rocketmq_asyncio" else set()
    expected = set(driver.SHARED_EXPORTS) | set(driver.CLIENT_CLASSES) | extras
    assert set(module.__all__) == expected
    import rocketmq_proto

    for name in driver.SHARED_EXPORTS:
        assert getattr(module, name) is getattr(rocketmq_proto, name)


def test_generated_blocking_classes_are_up_to_date() -> None:
    """``rocketmq_sync``'s client classes are generated from the asyncio ones."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
