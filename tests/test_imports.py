"""Imports point down: fastbp's modules form no cycle, and none is imported
inside a function (optional third-party packages may be, and are).

Every import statement of every module in the installed package is read from
its source (top level and inside functions alike) and resolved to a fastbp
module; the graph they make must be acyclic."""
import ast
import os

import fastbp

PACKAGE = os.path.dirname(os.path.abspath(fastbp.__file__))


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                yield (rel[:-len(".__init__")] if rel.endswith(".__init__") else rel), path


def _resolve(module, path, node):
    """The fastbp modules an import statement names (a package's submodule when
    `from package import name` names one, else the module itself)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "fastbp"]
    if node.level:
        base = module.split(".")
        if not path.endswith("__init__.py"):
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "fastbp":
        return []
    found = []
    for alias in node.names:
        sub = os.path.join(os.path.dirname(PACKAGE), *(target + "." + alias.name).split("."))
        is_module = (os.path.exists(sub + ".py") or os.path.isdir(sub) or alias.name == "_core")
        found.append(target + "." + alias.name if is_module else target)
    return found


def _graph():
    edges, inside_functions = {}, []
    for module, path in _modules():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _resolve(module, path, node)
                edges.setdefault(module, set()).update(t for t in targets if t != module)
                if targets and id(node) in in_function:
                    inside_functions.append(f"{module}:{node.lineno} imports {', '.join(targets)}")
    return edges, inside_functions


def _cycle(edges):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None
    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_fastbp_modules_import_no_cycle():
    edges, _ = _graph()
    assert "fastbp.training" in edges and "fastbp._core" in edges["fastbp._linalg"]   # the graph is real
    cycle = _cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_no_fastbp_module_is_imported_inside_a_function():
    _, inside = _graph()
    assert not inside, inside


def test_the_reference_imports_only_numpy_and_itself():
    for module, path in _modules():
        if not module.startswith("fastbp.reference"):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["fastbp.reference" if node.level else (node.module or "").split(".")[0]]
            else:
                continue
            assert set(names) <= {"numpy", "fastbp.reference"}, f"{module}:{node.lineno} {names}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
