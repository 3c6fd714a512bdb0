"""algorithms/ decides; it never reads clocks or randomness and never does I/O."""

import ast
from pathlib import Path

import seawall.algorithms

FORBIDDEN = {"time", "random", "asyncio", "aiohttp", "httpx", "redis", "asyncpg", "sqlite3", "socket",
             "threading", "os", "secrets", "datetime"}


def test_algorithms_import_no_clock_randomness_or_io():
    root = Path(seawall.algorithms.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 2
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            offenders += [f"{path.name}: {n}" for n in names if n in FORBIDDEN]
    assert offenders == []
