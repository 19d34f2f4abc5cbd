"""Which package may import which: the library `dualfocus_jax/` imports none of the project's top-level
packages (`datasets/`, `configs/`, `experiments/`, `benchmarks/`, `tests/`; the entry points import the library,
never the reverse), and no modules of the project import each other in a circle.

Both are read from the source with `ast`: imports at the top of a module and those inside functions alike.
"""

from __future__ import annotations

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = "dualfocus_jax"
ENTRY_SIDE = ("datasets", "configs", "experiments", "benchmarks", "tests")
PACKAGES = (LIBRARY, "experiments", "benchmarks", "configs", "datasets")


def module_files(package: str) -> dict[str, str]:
    """{dotted module name: path} of every .py under `package/` (a package's __init__ named as the package)."""
    modules = {}
    for folder, subfolders, files in os.walk(os.path.join(REPO, package)):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith((".", "__pycache__")))
        for name in sorted(files):
            if name.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, name), REPO)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = os.path.join(folder, name)
    return modules


def imported_names(module: str, path: str) -> list[tuple[str, tuple[str, ...], int]]:
    """(module named, names taken from it, line) of every import statement of a module, at any depth; relative
    imports resolved against the module's package."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, tuple(alias.name for alias in node.names), node.lineno))
    return found


def test_the_library_imports_no_entry_point_package():
    offences = []
    for module, path in module_files(LIBRARY).items():
        for name, _, line in imported_names(module, path):
            if name.split(".")[0] in ENTRY_SIDE:
                offences.append(f"{os.path.relpath(path, REPO)}:{line} imports {name}")
    assert not offences, "the library must not import the entry-point side:\n" + "\n".join(offences)


def import_graph() -> dict[str, set[str]]:
    """{module: modules of the project it imports}; `from pkg import name` imports pkg.name when that is a
    module of the project, else pkg; an import of a module outside the project is left out."""
    modules = {}
    for package in PACKAGES:
        modules.update(module_files(package))
    graph = {module: set() for module in modules}
    for module, path in modules.items():
        for name, names, _ in imported_names(module, path):
            targets = [f"{name}.{item}" if f"{name}.{item}" in modules else name for item in names] or [name]
            graph[module].update(target for target in targets if target in modules and target != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_modules_import_each_other_in_a_circle():
    found = cycles(import_graph())
    assert not found, "modules that import each other in a circle:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_evaluation_imports_nothing_from_training():
    # The training loop runs the evaluators; evaluation must stand alone (notebooks, experiments, benchmarks).
    graph = import_graph()
    offences = [f"{module} imports {target}" for module, targets in graph.items()
                if module.startswith(f"{LIBRARY}.evaluation") for target in targets
                if target.startswith(f"{LIBRARY}.training")]
    assert not offences, "\n".join(offences)
