"""rocketmq_proto is built in floors: a module imports only its own floor and the
floors below (checked on the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "rocketmq_proto"

#: Floor of each part of the core, lowest first; the package's top modules
#: (its public surface, options and the driver contract) stand above them all.
FLOORS = {
    "rocketmq_proto.wire": 1,
    "rocketmq_proto.message": 2,
    "rocketmq_proto.connection": 3,
    "rocketmq_proto.flows": 4,
    "rocketmq_proto.flows.consumer": 5,
}
TOP = 6


def floor_of(module: str) -> int:
    """The floor of a core module: its longest matching part, else the top."""
    best = TOP
    best_len = 0
    for part, floor in FLOORS.items():
        if (module == part or module.startswith(part + ".")) and len(part) > best_len:
            best, best_len = floor, len(part)
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a core module in ``source``, a module of
    ``package``; relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        else:
            continue
        found.extend((node.lineno, n) for n in names if n.split(".")[0] == "rocketmq_proto")
    return found


MODULES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_module_imports_only_its_floor_and_below(path: Path) -> None:
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    mine = floor_of(me)
    for line, imported in core_imports(path.read_text(), package):
        assert floor_of(imported) <= mine, (
            f"{me} (floor {mine}) imports {imported} (floor {floor_of(imported)}) at line {line}"
        )


def test_every_module_sits_in_a_floor_or_at_the_top() -> None:
    """The flat layout is gone: only the public surface stays at the top (with the
    optional OpenTelemetry integration, which only it imports)."""
    top = {p.name for p in CORE.glob("*.py")}
    surface = {"__init__.py", "build.py", "driver.py", "options.py", "otel.py", "strategies.py"}
    assert top <= surface, sorted(top)


def test_the_checker_sees_upward_imports() -> None:
    """The check can fail: absolute and relative upward imports are both seen."""
    source = "from rocketmq_proto.flows.session import ClientCore\nfrom ..flows import effects\n"
    found = core_imports(source, "rocketmq_proto.wire")
    assert found == [(1, "rocketmq_proto.flows.session"), (2, "rocketmq_proto.flows")]
    assert [floor_of(m) for _, m in found] == [4, 4]
    assert floor_of("rocketmq_proto.flows.consumer.push") == 5
    assert floor_of("rocketmq_proto.options") == TOP
