"""The runners hold no dead code: every function defined at the top of a runner module is
used somewhere in the package (a case table, another module, the harness's commands)."""

import ast
import re
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent / "lab"
RUNNERS = LAB / "runners"


def test_every_top_level_function_of_a_runner_module_is_used():
    sources = {path: path.read_text() for path in LAB.rglob("*.py")}
    unused = []
    for path in sorted(RUNNERS.glob("*.py")):
        for node in ast.parse(sources[path]).body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name == "main":
                continue
            uses = sum(len(re.findall(rf"\b{re.escape(node.name)}\b", text)) for text in sources.values())
            if uses < 2:  # its definition is one
                unused.append(f"{path.name}: {node.name}")
    assert not unused, f"defined but never used: {unused}"
