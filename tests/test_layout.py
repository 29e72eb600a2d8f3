"""The package's shape: the core never imports a tool, the algorithm imports no env, import chains stay short."""

import ast
import functools
import subprocess
import sys

from conftest import ROOT

TOOLS = {"bench", "speedup", "scaling", "experiments", "difficulty", "plot", "evaluate"}  # docs/layout.md
MODULES = {path.stem: path for path in (ROOT / "maddpg").glob("*.py") if path.stem != "__init__"}
MODULES["train"] = ROOT / "train.py"  # the entry point is core too


def imports(module: str) -> set[str]:
    """The package modules `module` imports."""
    names = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("maddpg"):
            names |= {node.module.split(".")[1]} if "." in node.module else {alias.name for alias in node.names}
    return names & set(MODULES)


@functools.cache
def longest_chain(module: str) -> tuple[str, ...]:
    return max([(module, *longest_chain(m)) for m in imports(module)], key=len, default=(module,))


def test_every_tool_exists_and_the_core_imports_none():
    assert set(MODULES) >= TOOLS
    for module in set(MODULES) - TOOLS:
        assert not imports(module) & TOOLS, f"core module {module} imports a tool"


def test_the_longest_import_chain_is_at_most_nine_modules():
    chain = max((longest_chain(m) for m in MODULES), key=len)
    assert len(chain) <= 9, " -> ".join(chain)


def test_importing_the_algorithm_does_not_import_an_env():
    code = "import sys, maddpg.learner; print(sorted(m for m in sys.modules if m.startswith(('mpe2', 'maddpg.envs'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_the_docs_layout_lists_every_module_and_every_tool_under_tools():
    layout = (ROOT / "docs" / "layout.md").read_text().split("```")[1]
    listed = {line.split()[0].removeprefix("maddpg/").removesuffix(".py") for line in layout.splitlines()
              if line.startswith("maddpg/")}  # fmt: skip
    assert listed == set(MODULES) - {"train"}
    tools = layout.split("\ntools\n")[1]
    assert {m for m in listed if f"maddpg/{m}.py" in tools} == TOOLS
