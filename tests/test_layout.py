"""The package's shape: three layers in three places (maddpg/core/, maddpg/distributed/, the tools at the
top), imports from a layer to the ones below it only, the algorithm importing no env, short import chains."""

import ast
import functools
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "maddpg"
LAYERS = {"core": 0, "distributed": 1, "tools": 2, "train": 3}  # a module may import its own layer and those below
TOOLS = {"bench", "speedup", "scaling", "experiments", "difficulty", "plot", "evaluate", "stats"}  # docs/layout.md
MODULES = {
    path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", "."): path
    for path in PACKAGE.rglob("*.py")
    if path.stem != "__init__"
}  # "core.learner", "distributed.genetic", "evaluate"
MODULES["train"] = ROOT / "train.py"


def layer(module: str) -> str:
    return module.split(".")[0] if "." in module else "train" if module == "train" else "tools"


def imports(module: str) -> set[str]:
    """The package modules `module` imports, by their names in MODULES."""
    names = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("maddpg"):
            where = node.module.removeprefix("maddpg").removeprefix(".")
            names |= {f"{where}.{alias.name}".lstrip(".") for alias in node.names} | {where}
    return names & set(MODULES)


@functools.cache
def longest_chain(module: str) -> tuple[str, ...]:
    return max([(module, *longest_chain(m)) for m in imports(module)], key=len, default=(module,))


def test_the_tools_are_the_top_level_modules():
    assert {module for module in MODULES if layer(module) == "tools"} == TOOLS


def test_imports_go_from_a_layer_to_the_layers_below_only():
    assert imports("distributed.genetic") >= {"core.comm", "core.learner"}  # the parser sees both import forms
    assert imports("experiments") >= {"plot", "core.checkpoint"}
    for module in MODULES:
        for imported in imports(module):
            assert LAYERS[layer(imported)] <= LAYERS[layer(module)], f"{module} imports {imported}"


def test_the_longest_import_chain_is_at_most_nine_modules():
    chain = max((longest_chain(m) for m in MODULES), key=len)
    assert len(chain) <= 9, " -> ".join(chain)


def test_importing_the_algorithm_does_not_import_an_env():
    loaded = "sorted(m for m in sys.modules if m.startswith(('mpe2', 'maddpg.core.envs')))"
    code = f"import sys, maddpg.core.learner; print({loaded})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_the_docs_layout_lists_every_module_in_its_layer():
    layout = (ROOT / "docs" / "layout.md").read_text().split("```")[1]
    listed = {}
    for block in layout.strip().split("\n\n"):
        heading = block.splitlines()[0].split()[0].removeprefix("maddpg/").rstrip(":/")
        for line in block.splitlines()[1:]:
            if line.startswith("maddpg/") and line.split()[0].endswith(".py"):
                module = line.split()[0].removeprefix("maddpg/").removesuffix(".py").replace("/", ".")
                listed[module] = heading
    assert set(listed) == set(MODULES) - {"train"}
    assert all(layer(module) == heading for module, heading in listed.items()), listed
