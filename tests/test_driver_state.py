"""The drivers keep no module-level state about clients: no registry of runtimes,
connections or tasks, no module global a function rebinds, and one at-fork hook
that counts forks (each object notices a fork itself on its next use). Checked on
the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ("rocketmq_asyncio", "rocketmq_sync", "rocketmq_gevent")
MODULES = sorted(p for d in DRIVERS for p in (ROOT / d).glob("*.py"))

#: Callables whose result is a mutable container (a registry in the making).
CONTAINERS = {
    "set",
    "dict",
    "list",
    "bytearray",
    "WeakSet",
    "WeakKeyDictionary",
    "WeakValueDictionary",
    "defaultdict",
    "OrderedDict",
    "deque",
    "Counter",
    "ChainMap",
    "local",
}
#: Module or class attributes allowed to hold a container: tables nobody changes.
IMMUTABLE_TABLES = {"__all__"}
#: Module globals a function may rebind: (module, name) -> what it holds.
REBOUND = {
    ("rocketmq_sync/_runtime.py", "_forks"): "how many forks led to this process (an int)",
    ("rocketmq_sync/_runtime.py", "_fork_lock"): "a lock made afresh in each forked child",
}
#: The one module that registers an at-fork hook (it bumps ``_forks``).
FORK_HOOKS = ["rocketmq_sync/_runtime.py"]


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _makes_container(value: ast.expr) -> bool:
    if isinstance(value, (ast.List, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp)):
        return True
    return isinstance(value, ast.Call) and _name(value.func) in CONTAINERS


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        found = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        found = [node.target]
    else:
        return []
    return [t.id if isinstance(t, ast.Name) else ast.unparse(t) for t in found]


def registries(source: str) -> list[str]:
    """Module- and class-level names bound to a mutable container."""
    found = []
    tree = ast.parse(source)
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for node in body:
            value = getattr(node, "value", None)
            if value is None or not _makes_container(value):
                continue
            for name in _targets(node):
                if name not in IMMUTABLE_TABLES:
                    found.append(f"line {node.lineno}: {name} = {ast.unparse(value)}")
    return found


def rebound_globals(source: str) -> list[str]:
    """Module globals that functions declare ``global`` (to rebind them)."""
    return sorted(
        {
            name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Global)
            for name in node.names
        }
    )


def fork_hooks(source: str) -> int:
    return sum(
        1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and _name(node.func) == "register_at_fork"
    )


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_holds_a_registry(path: Path) -> None:
    assert registries(path.read_text()) == []


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_function_rebinds_a_module_global(path: Path) -> None:
    rel = _rel(path)
    unexpected = [n for n in rebound_globals(path.read_text()) if (rel, n) not in REBOUND]
    assert unexpected == []


def test_the_drivers_register_one_fork_hook_that_counts_forks() -> None:
    hooks = [_rel(p) for p in MODULES for _ in range(fork_hooks(p.read_text()))]
    assert hooks == FORK_HOOKS
    assert {module for module, _ in REBOUND} == set(FORK_HOOKS)


def test_the_checks_see_registries_rebinding_and_hooks() -> None:
    source = (
        "import weakref, os\n"
        "__all__ = ['A']\n"
        "_live: weakref.WeakSet[object] = weakref.WeakSet()\n"
        "_by_id = {}\n"
        "_NAMES = ('a', 'b')\n"
        "class A:\n"
        "    __slots__ = ('x',)\n"
        "    instances = []\n"
        "_executor = None\n"
        "def get():\n"
        "    global _executor\n"
        "    _executor = object()\n"
        "os.register_at_fork(after_in_child=get)\n"
    )
    assert registries(source) == [
        "line 3: _live = weakref.WeakSet()",
        "line 4: _by_id = {}",
        "line 8: instances = []",
    ]
    assert rebound_globals(source) == ["_executor"]
    assert fork_hooks(source) == 1
