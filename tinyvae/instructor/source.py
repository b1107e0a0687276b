"""Reading the solution package's source: where each graded function is, and whether a copy has blanked it.

Host-only (file parsing with ``ast``). Both ``handout`` (which writes the student copy) and ``grading`` (which
refuses to grade against a student copy) read the package this way.
"""
import ast
from pathlib import Path

from .manifest import MANIFEST

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the solution package: tinyvae/


def find_def(tree, qualname, file):
    """The FunctionDef named by ``qualname`` ("Class.method" or "function") at the top of a module's tree."""
    node, scope = None, tree.body
    for part in qualname.split("."):
        found = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == part]
        if not found:
            raise ValueError(f"{file} defines no {qualname} (no {part!r} found): is the manifest out of date?")
        node, scope = found[-1], found[-1].body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ValueError(f"{file}: {qualname} is a class, not a function")
    return node


def has_docstring(node):
    first = node.body[0]
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def is_blanked(node):
    """True when the body (after the docstring) is a single ``raise NotImplementedError(...)``."""
    body = node.body[1:] if has_docstring(node) else node.body
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def blanked_functions(package_dir=PACKAGE_DIR, entries=MANIFEST):
    """Ids of the entries whose function (or a helper it blanks) raises NotImplementedError in ``package_dir``."""
    package_dir, found = Path(package_dir), []
    for entry in entries:
        for file, qualname in entry.targets:
            path = package_dir / file
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: {package_dir} is not a complete tinyvae package")
            if is_blanked(find_def(ast.parse(path.read_text(encoding="utf-8")), qualname, file)):
                found.append(entry.id)
                break
    return found
