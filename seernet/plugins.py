"""The user's own code, named on the command line: ``FILE.py:CALLABLE`` or ``package.module:CALLABLE``.

A plug-in spec is recorded in the workspace (``seernet.json``) with the file made absolute,
so every later step, ``--workers`` process and Ray task imports the same callable again.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seernet.errors import UserError

# "file.py:name" or "pkg.mod:name"; a registry name never holds a colon.
_SPEC = re.compile(r"^(?P<target>[^:]+\.py|[A-Za-z_][\w.]*):(?P<name>[A-Za-z_]\w*)$")
# How a workspace records what the Python API was handed as an object: a name, not code
# that another process could import.
PYTHON_OBJECT = " (Python object)"


def is_plugin(spec: str | None) -> bool:
    """Whether ``spec`` names user code rather than a registry entry."""
    return bool(spec) and ":" in spec and not spec.endswith(PYTHON_OBJECT)


def object_name(obj: object) -> str:
    """The recorded name of an object given to the Python API (its class, or function, name)."""
    # No module: the same class is ``__main__.Net`` in a script and ``train.Net`` in a notebook.
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{named.__qualname__}{PYTHON_OBJECT}"


def refuse_python_object(name: str | None, what: str) -> None:
    """A workspace whose ``what`` was a Python object cannot be rebuilt from its name."""
    if name and name.endswith(PYTHON_OBJECT):
        raise UserError(
            f"this workspace's {what} was given to the Python API as an object ({name}): continue in "
            f"Python with seernet.Compressor, or name it as a plug-in FILE.py:CALLABLE in a new --workdir"
        )


def normalized(spec: str) -> str:
    """``spec`` with a file path made absolute (what the workspace records); checked for form."""
    m = _SPEC.match(spec)
    if m is None:
        raise UserError(
            f"{spec!r} is not a plug-in: write FILE.py:CALLABLE or package.module:CALLABLE"
        )
    target = m["target"]
    if target.endswith(".py"):
        target = str(Path(target).expanduser().resolve())
    return f"{target}:{m['name']}"


def load_callable(spec: str) -> Callable[..., Any]:
    """Import the callable that ``spec`` names; every failure is a one-line UserError."""
    m = _SPEC.match(spec)
    if m is None:
        raise UserError(
            f"{spec!r} is not a plug-in: write FILE.py:CALLABLE or package.module:CALLABLE"
        )
    target, name = m["target"], m["name"]
    try:
        module = (
            _import_file(Path(target))
            if target.endswith(".py")
            else importlib.import_module(target)
        )
    except UserError:
        raise
    except Exception as exc:  # the user's module may raise anything while importing
        raise UserError(
            f"cannot import {target} for {spec!r}: {type(exc).__name__}: {exc}"
        ) from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"{target} has no callable {name!r} (from {spec!r})")
    return fn


def call_plugin(spec: str, what: str) -> Any:
    """Call the zero-argument callable ``spec``; ``what`` says what it should return, for errors."""
    fn = load_callable(spec)
    try:
        return fn()
    except Exception as exc:  # user code
        raise UserError(
            f"{spec} failed while building the {what}: {type(exc).__name__}: {exc}"
        ) from exc


def _import_file(path: Path):  # a module
    if not path.is_file():
        raise UserError(f"plug-in file {path} does not exist")
    # One module name per file, so a second import (another step) reuses it.
    mod_name = "seernet_plugin_" + re.sub(r"\W", "_", str(path.resolve()))
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return module
