"""Imports run one way: no cycle among tinyvae's modules, no private name borrowed across modules, and every module
imports alone, in a fresh interpreter, in any order."""
import ast
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("numpy")  # reads source files and starts interpreters of its own

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinyvae"


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# instructor/student/ holds templates that the handout copies into a student's package (beside a _runner.py made
# for it): they are never imported from here, so they are not modules of this package.
STUDENT_TEMPLATES = PACKAGE / "instructor" / "student"
MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
           if p.name != "__main__.py" and STUDENT_TEMPLATES not in p.parents}
PACKAGES = {name for name, p in MODULES.items() if p.name == "__init__.py"}


def _base(name, level):
    """The package a relative import of ``level`` dots in module ``name`` starts from."""
    parts = name.split(".") if name in PACKAGES else name.split(".")[:-1]
    return ".".join(parts[:len(parts) - level + 1])


def imports(name, tree):
    """[(target module, imported names, line)] for every tinyvae import in the module, at any depth (an import
    inside a function is an import too: it runs before the function can)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "tinyvae"]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(filter(None, [_base(name, node.level), module]))
            if module.split(".")[0] != "tinyvae":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if sub in MODULES:  # `from . import losses`: the module itself
                    found.append((sub, [], node.lineno))
                else:
                    found.append((module, [alias.name], node.lineno))
    return found


def graph():
    """module -> {imported module: line}, leaving out a module's own ancestor packages (importing a module runs its
    packages' __init__ first anyway: reading ``__version__`` from the package is not a layering edge)."""
    edges = {}
    for name, path in MODULES.items():
        deps = {}
        for target, _, line in imports(name, ast.parse(path.read_text())):
            if target != name and not name.startswith(target + "."):
                deps.setdefault(target, line)
        edges[name] = deps
    return edges


def find_cycle(edges):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in edges.get(node, ()):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_among_tinyvae_modules():
    edges = graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {edges[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_cycle_finder_can_fail():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_the_models_import_neither_training_nor_their_subclasses():
    edges = graph()
    assert not {"tinyvae.train", "tinyvae.kinds", "tinyvae.gan", "tinyvae.conv_models"} & set(edges["tinyvae.models"])
    assert not {m for m in edges["tinyvae.train"] if m in ("tinyvae.models", "tinyvae.conv_models", "tinyvae.gan")}


def private_imports(name, tree):
    """(module, name, line) of each ``from .x import _private`` across modules (dunder names such as __version__
    are public)."""
    return [(target, n, line) for target, names, line in imports(name, tree) if target != name
            for n in names if n.startswith("_") and not n.startswith("__")]


def test_no_private_name_is_imported_across_modules():
    offenders = [f"{name}:{line} imports {n} from {target}" for name, path in MODULES.items()
                 for target, n, line in private_imports(name, ast.parse(path.read_text()))]
    assert offenders == []


def test_the_private_rule_can_fail():
    tree = ast.parse("from .train import _positive_int, History\nfrom .. import __version__\n")
    assert private_imports("tinyvae.models", tree) == [("tinyvae.train", "_positive_int", 1)]


# Each module imported under a bare stand-in for the tinyvae package (so the package's __init__, which imports
# everything, does not run first): the module's own imports must then be enough, and in this order.
ALONE = r"""
import importlib, json, sys, types
names, root = json.loads(sys.argv[1]), sys.argv[2]
for name in names:
    for loaded in [m for m in sys.modules if m == "tinyvae" or m.startswith("tinyvae.")]:
        del sys.modules[loaded]
    stand_in = types.ModuleType("tinyvae")
    stand_in.__path__ = [root + "/tinyvae"]
    stand_in.__version__ = "0"
    sys.modules["tinyvae"] = stand_in
    try:
        importlib.import_module(name)
    except Exception as err:
        print(f"{name}: {type(err).__name__}: {err}")
        raise SystemExit(1)
print("ok", len(names))
"""

ORDERED = r"""
import importlib, json, sys
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
print("ok", len(names))
"""


def _orders():
    names = sorted(n for n in MODULES if n != "tinyvae")
    shuffled = list(names)
    random.Random(0).shuffle(shuffled)
    return {"sorted": names, "reversed": names[::-1], "shuffled": shuffled}


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_every_module_imports_alone_in_a_fresh_interpreter(order):
    names = _orders()[order]
    proc = subprocess.run([sys.executable, "-c", ALONE, json.dumps(names), str(ROOT)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ok {len(names)}", proc.stdout + proc.stderr


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_the_package_imports_its_modules_in_any_order(order):
    names = _orders()[order]
    proc = subprocess.run([sys.executable, "-c", ORDERED, json.dumps(names)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ok {len(names)}", proc.stdout + proc.stderr
