"""The package layout of docs/ARCHITECTURE.md: who may import whom, and torch-free packages."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a package may import its own modules and those of packages listed before it.
LAYERS = (
    "top", "workspace", "data", "models", "space", "compression", "latency", "steps", "api", "cli",
)  # fmt: skip
# The package itself is the public face: ``seernet.Compressor`` loads the API on first use.
FACADE = "seernet.__init__"
SUBPACKAGES = [p.name for p in (ROOT / "seernet").iterdir() if (p / "__init__.py").is_file()]


def _layer(module: str) -> str:
    """``seernet.space.costs`` -> ``space``; top-level modules (``seernet.errors``) -> ``top``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "top"


def _runtime_imports(path: Path) -> list[str]:
    """Every ``seernet.*`` module ``path`` imports, at the top or inside functions, except
    imports under ``if TYPE_CHECKING:`` (names for annotations, never executed)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seernet"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("seernet")]
    return found


def test_every_subpackage_has_a_layer():
    assert sorted(SUBPACKAGES) == sorted(LAYERS[1:])


def test_packages_import_only_lower_layers():
    wrong = []
    for path in sorted((ROOT / "seernet").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module == FACADE:
            continue
        own = LAYERS.index(_layer(module))
        for target in _runtime_imports(path):
            if target != "seernet" and LAYERS.index(_layer(target)) > own:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_algorithm_packages_never_import_seernet():
    for package in ("predictor", "search"):
        for path in (ROOT / package).rglob("*.py"):
            assert not _runtime_imports(path), path


def test_package_inits_are_torch_free():
    names = ", ".join(f"seernet.{p}" for p in sorted(SUBPACKAGES) if p != "models")
    code = f"import sys, {names}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_api_is_reached_from_the_package_without_importing_torch_first():
    code = "import sys, seernet; t = 'torch' in sys.modules; seernet.Compressor; print(t, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_help_is_torch_free():
    code = (
        "import sys\nfrom seernet.cli.main import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "collect" in out.stdout and out.stdout.split()[-1] == "False"
