"""Every public function and method in lunos/services, lunos/providers and lunos/billing has
annotations on each of its parameters and on its return, so the rule holds for the next change.

Public: a function defined at module level, or a method defined in a class body (classes nested in
classes too), whose name does not start with "_". The first parameter of a method other than a
staticmethod (self, cls) needs none; functions nested in other functions are not public and are not
checked.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "lunos"
PACKAGES = ("services", "providers", "billing")
FILES = sorted(path for package in PACKAGES for path in (ROOT / package).glob("*.py"))


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def _missing(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> list[str]:
    """The parts of one function's signature that lack an annotation."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if in_class and "staticmethod" not in _decorator_names(node) and positional:
        positional = positional[1:]
    missing = [arg.arg for arg in positional if arg.annotation is None]
    if args.vararg is not None and args.vararg.annotation is None:
        missing.append(f"*{args.vararg.arg}")
    missing += [arg.arg for arg in args.kwonlyargs if arg.annotation is None]
    if args.kwarg is not None and args.kwarg.annotation is None:
        missing.append(f"**{args.kwarg.arg}")
    if node.returns is None:
        missing.append("return")
    return missing


def _public_functions(body: list[ast.stmt], prefix: str, in_class: bool):
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_"):
                yield f"{prefix}{node.name}", node, in_class
        elif isinstance(node, ast.ClassDef):
            yield from _public_functions(node.body, f"{prefix}{node.name}.", True)
        elif isinstance(node, ast.If | ast.Try):
            # Definitions under `if TYPE_CHECKING:` or a try/except import fallback.
            blocks = [node.body, node.orelse]
            if isinstance(node, ast.Try):
                blocks += [handler.body for handler in node.handlers] + [node.finalbody]
            for block in blocks:
                yield from _public_functions(block, prefix, in_class)


def unannotated(path: Path, root: Path = ROOT) -> list[str]:
    """Each public function in one file that lacks an annotation, with what it lacks."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    relative = path.relative_to(root.parent)
    found = []
    for name, node, in_class in _public_functions(tree.body, "", False):
        missing = _missing(node, in_class)
        if missing:
            found.append(f"{relative}:{node.lineno} {name}: {', '.join(missing)}")
    return found


def test_the_packages_have_files():
    assert len(FILES) > 20, FILES


@pytest.mark.parametrize("path", FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_public_functions_are_annotated(path):
    missing = unannotated(path)
    assert not missing, "public functions without annotations:\n" + "\n".join(missing)


def test_the_checker_sees_what_is_missing(tmp_path):
    source = tmp_path / "lunos" / "sample.py"
    source.parent.mkdir()
    source.write_text(
        "def good(a: int, *b: str, c: int = 1, **d: str) -> None: ...\n"
        "def bad(a, *b, c=1, **d): ...\n"
        "def _private(a): ...\n"
        "class Thing:\n"
        "    def method(self, x: int) -> int: ...\n"
        "    def loose(self, x): ...\n"
        "    @staticmethod\n"
        "    def static(x) -> None: ...\n"
        "    def _hidden(self, x): ...\n"
        "    def outer(self) -> None:\n"
        "        def inner(y): ...\n"
        "if True:\n"
        "    async def under_if(z) -> None: ...\n",
        encoding="utf-8",
    )
    assert unannotated(source, root=tmp_path / "lunos") == [
        "lunos/sample.py:2 bad: a, *b, c, **d, return",
        "lunos/sample.py:6 Thing.loose: x, return",
        "lunos/sample.py:8 Thing.static: x",
        "lunos/sample.py:13 under_if: z",
    ]
