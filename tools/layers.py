"""The floors of `stylize/`, read from its imports: which module imports which, each module's floor, the arrows
between floors, and the picture of them in the README (a Mermaid graph, drawn from the imports, not by hand).

    python tools/layers.py            # print the graph the README shows
    python tools/layers.py --check    # exit 1 if the README's graph differs from the imports
    python tools/layers.py --write    # redraw the README's graph from the imports

tests/test_layers.py checks the rules with the same functions: each floor imports only floors below it (the
shared modules may read the network's layer names from `engine.vgg`), nothing in stylize imports gradio or the UI,
and no module imports itself round a circle.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "stylize"
# Bottom up. A module's floor is its subpackage, or "shared" for the top-level modules below the engine.
FLOORS = ("shared", "engine", "cost", "experiments", "service", "entry")
SHARED = {"stylize.errors", "stylize.images", "stylize.params", "stylize.presets"}
ENTRY = {"stylize", "stylize.__main__"}
# The one import that reaches up a floor: settings validate layer names, which are the network's.
ALLOWED_UP = {("stylize.params", "stylize.engine.vgg")}
WORDS = {"shared": "errors · images · params · presets", "engine": "VGG, losses, targets, objective, L-BFGS, loop",
         "cost": "time model, budgets, GPU plans", "experiments": "Compare, Explore, sheets",
         "service": "studio, checks, inputs, links, files, Stop, compute thread",
         "entry": "stylize/__init__, the command line"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (at any depth of the file: lazy imports count), resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` names a module; `from module import name` not
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    """stylize's modules and the stylize modules each imports (packages' own __init__ re-exports left out)."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def external(path: Path) -> set[str]:
    return {m.split(".")[0] for m in imports(path)}


def floor_of(module: str) -> str:
    if module in ENTRY:
        return "entry"
    if module in SHARED:
        return "shared"
    return module.split(".")[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle of imports (one path each), by depth-first search."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def floor_arrows(edges: dict[str, set[str]]) -> Counter:
    return Counter((floor_of(a), floor_of(b)) for a, targets in edges.items() for b in targets
                   if floor_of(a) != floor_of(b))


def mermaid(edges: dict[str, set[str]]) -> str:
    """The floors as a Mermaid graph: a box per floor (its modules counted), an arrow per pair of floors with the
    number of imports it stands for."""
    counts = Counter(floor_of(m) for m in edges if not (ROOT.joinpath(*m.split(".")) / "__init__.py").exists())
    lines = ["```mermaid", "graph BT"]
    for floor in FLOORS:
        lines.append(f'  {floor}["<b>{floor}</b> ({counts[floor]})<br/>{WORDS[floor]}"]')
    for (a, b), n in sorted(floor_arrows(edges).items(), key=lambda kv: (FLOORS.index(kv[0][0]), kv[0][1])):
        lines.append(f"  {a} -->|{n}| {b}")
    lines.append("```")
    return "\n".join(lines)


def readme_graph() -> str | None:
    text = (ROOT / "README.md").read_text()
    start = text.find("```mermaid\ngraph BT")
    return None if start < 0 else text[start:text.index("```", start + 3) + 3]


if __name__ == "__main__":
    drawn = mermaid(graph())
    if "--write" in sys.argv:
        readme = ROOT / "README.md"
        readme.write_text(readme.read_text().replace(readme_graph(), drawn))
    if "--check" in sys.argv:
        same = readme_graph() == drawn
        print("README's graph matches the imports" if same else "README's graph differs:\n" + drawn)
        sys.exit(0 if same else 1)
    print(drawn)
