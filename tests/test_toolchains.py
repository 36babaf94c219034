"""The toolchain registry: one name list, one constructor, no import cycle (no toolchain is set up)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ot2wheels import targets
from ot2wheels.errors import ConfigError, ToolchainError
from ot2wheels.paths import Layout
from ot2wheels.toolchains import PROVIDERS, Toolchain, get_toolchain

ROOT = Path(__file__).resolve().parents[1]


def test_registry_names_are_the_targets_providers() -> None:
    assert set(PROVIDERS) == set(targets.PROVIDERS) - {"none"}  # "none": planning targets
    assert all(issubclass(cls, Toolchain) for cls in PROVIDERS.values())


def test_every_target_gets_its_provider_with_one_constructor(tmp_path: Path) -> None:
    layout = Layout(root=ROOT, cache=tmp_path / "cache", dist=tmp_path / "dist")
    ts = targets.load_targets(layout.targets_file)
    for target in ts.targets.values():
        if not target.buildable:
            with pytest.raises(ToolchainError, match="planning target"):
                get_toolchain(target, layout)
            continue
        tc = get_toolchain(target, layout, ("libyaml-dev",))
        assert type(tc) is PROVIDERS[target.provider] and tc.target is target
        assert tc.extra_packages == ("libyaml-dev",)
    assert not (tmp_path / "cache").exists()  # making one fetches nothing


def test_unknown_provider_is_a_config_error(tmp_path: Path) -> None:
    import dataclasses

    layout = Layout(root=ROOT, cache=tmp_path, dist=tmp_path)
    target = dataclasses.replace(targets.load_targets(layout.targets_file).get("bookworm-armhf"), provider="nix")
    with pytest.raises(ConfigError, match=r"unknown provider 'nix'.*known: buildroot-sdk, debian"):
        get_toolchain(target, layout)


def _import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, read from the source (TYPE_CHECKING ones too)."""
    mods = {}
    for p in src.rglob("*.py"):
        parts = p.relative_to(src.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in mods.items():
        pkg = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg
                for _ in range(max(0, node.level - 1)):
                    base = base.rsplit(".", 1)[0]
                where = (f"{base}.{node.module}" if node.module else base) if node.level else str(node.module)
                deps |= {f"{where}.{a.name}" if f"{where}.{a.name}" in mods else where for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_no_import_cycles_between_modules() -> None:
    graph = _import_graph(ROOT / "src" / "ot2wheels")

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in graph[todo.pop()] - seen:
                seen.add(d)
                todo.append(d)
        return seen

    assert "ot2wheels.toolchains.base" in graph["ot2wheels.toolchains.debian"]  # the graph is read
    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a]
                     if a in reach(b) and not a.startswith(b + ".") and not b.startswith(a + ".")})
    assert cycles == []
