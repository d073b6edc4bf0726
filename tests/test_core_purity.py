"""rocketmq_proto does no IO and reads no clock: checked on its source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "rocketmq_proto"
FORBIDDEN_MODULES = {
    "socket",
    "ssl",
    "select",
    "selectors",
    "asyncio",
    "threading",
    "gevent",
    "concurrent",
    "time",
    "subprocess",
    "multiprocessing",
}
CLOCK_CALLS = {"now", "utcnow", "today", "monotonic", "perf_counter", "sleep"}


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_io_and_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in CLOCK_CALLS, (
                f"{path.name}:{node.lineno} calls .{node.func.attr}()"
            )
