"""The package's shape: no import cycle anywhere in vinf_jax or convert, and the layering rules of
docs/architecture.md (models know modules only; parallel knows no pipeline, sampler or storage)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: modules of ours it imports}, counting imports anywhere in the file (also lazy ones)."""
    files = sorted((ROOT / "vinf_jax").rglob("*.py")) + sorted((ROOT / "convert").rglob("*.py"))
    modules = {module_name(f): f for f in files}
    graph = {}
    for name, file in modules.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub where one exists
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_graph_sees_the_packages():
    graph = import_graph()
    assert {"vinf_jax.pipeline", "vinf_jax.loading", "vinf_jax.checkpoint", "vinf_jax.convert.keymaps",
            "vinf_jax.config.load", "convert.videocrafter2"} <= graph.keys()
    assert "vinf_jax.loading" in graph["vinf_jax.convert.keymaps"]
    assert "vinf_jax.checkpoint" in graph["vinf_jax.loading"]
    assert {"vinf_jax.output.export", "vinf_jax.output.video_io", "vinf_jax.flow"} <= graph.keys()
    assert "vinf_jax.flow" in graph["vinf_jax.generate"] and "vinf_jax.named_models" in graph["vinf_jax.pipeline"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_layering_rules():
    graph = import_graph()
    rules = {
        "vinf_jax.models": ("vinf_jax.convert", "convert", "vinf_jax.parallel", "vinf_jax.sampling",
                            "vinf_jax.pipeline", "vinf_jax.checkpoint", "vinf_jax.loading"),
        "vinf_jax.parallel": ("vinf_jax.pipeline", "vinf_jax.sampling", "vinf_jax.checkpoint"),
        "vinf_jax.checkpoint": ("vinf_jax.models", "vinf_jax.loading", "vinf_jax.pipeline"),
        "vinf_jax.loading": ("vinf_jax.convert", "vinf_jax.pipeline"),
        "vinf_jax.config": ("vinf_jax.models", "vinf_jax.parallel", "vinf_jax.sampling", "vinf_jax.pipeline",
                            "vinf_jax.loading", "vinf_jax.checkpoint", "vinf_jax.output"),
        # the output stage turns latents into files; it knows no model, sampler, storage or front end
        "vinf_jax.output": ("vinf_jax.models", "vinf_jax.sampling", "vinf_jax.pipeline", "vinf_jax.loading",
                            "vinf_jax.checkpoint", "vinf_jax.convert", "vinf_jax.demo", "vinf_jax.flow",
                            "vinf_jax.generate", "vinf_jax.app"),
        # the pipeline knows no model by name (named_models does) and no front end
        "vinf_jax.pipeline": ("vinf_jax.demo", "vinf_jax.tiny", "vinf_jax.flow", "vinf_jax.generate", "vinf_jax.app"),
        # one generation flow serves both front ends and knows neither
        "vinf_jax.flow": ("vinf_jax.generate", "vinf_jax.app", "vinf_jax.demo"),
        "vinf_jax.generate": ("vinf_jax.app",),
    }
    broken = [(m, d) for m, deps in graph.items() for layer, banned in rules.items()
              if m == layer or m.startswith(layer + ".") for d in deps
              if any(d == b or d.startswith(b + ".") for b in banned)]
    assert not broken, broken


# import name -> distribution name, for the third-party packages the library may import
DISTRIBUTIONS = {"jax": "jax", "flax": "flax", "numpy": "numpy", "einops": "einops", "imageio_ffmpeg": "imageio-ffmpeg",
                 "orbax": "orbax-checkpoint", "transformers": "transformers", "tqdm": "tqdm", "ml_dtypes": "ml_dtypes",
                 "torch": "torch", "yaml": "pyyaml", "PIL": "pillow", "optax": "optax", "safetensors": "safetensors",
                 "ftfy": "ftfy", "regex": "regex", "gradio": "gradio", "pandas": "pandas"}


def test_dependencies_declared_are_the_ones_imported():
    """pyproject's dependencies (and the optional extras a module needs) are exactly what vinf_jax imports."""
    import sys
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda req: req.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
    declared = {name(r) for r in project["dependencies"]}
    extras = {name(r) for k, reqs in project.get("optional-dependencies", {}).items() if k != "test" for r in reqs}
    imported = set()
    for file in (ROOT / "vinf_jax").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imported.add((node.module or "").split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("vinf_jax", "__future__")}
    unknown = third_party - DISTRIBUTIONS.keys()
    assert not unknown, f"add these imports to DISTRIBUTIONS and pyproject: {unknown}"
    used = {DISTRIBUTIONS[m].lower() for m in third_party}
    assert used - declared - extras == set(), "imported but not declared"
    assert declared - used == set(), "declared but not imported"


def test_the_repository_stands_alone():
    """No tracked file reads or names a folder beside the repository or a path of one machine."""
    import subprocess

    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # an exported tree without git: every file
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    banned = [".." + "/shared", "/" + "work/", "/" + "root/", "/" + "home/"]
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".gz", ".safetensors", ".npy", ".mp4"):
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {b}" for b in banned if b in text]
    assert len(files) > 50 and not found, found
