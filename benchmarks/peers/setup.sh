#!/usr/bin/env bash
# Make benchmarks/peers/.venv: a venv for peer tools (Sony's Model Compression Toolkit) that
# reuses the torch of seernet's own .venv instead of downloading a second multi-GB wheel.
#
#   bash benchmarks/peers/setup.sh            # from the repo root, after seernet's .venv exists
#
# How: a plain venv of the same interpreter, plus a .pth file that adds seernet's
# site-packages as a site directory (after this venv's own). Packages pip installs here come first on sys.path, so a peer
# that pins another version of a shared package shadows it here and never touches
# seernet's environment.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
main_py="${SEERNET_PYTHON:-$repo/.venv/bin/python}"
[ -x "$main_py" ] || { echo "setup.sh: $main_py not found: make seernet's .venv first" >&2; exit 1; }
main_site="$("$main_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
base_py="$("$main_py" -c 'import sys; print(sys._base_executable)')"
"$base_py" -m venv "$here/.venv"
peer_site="$("$here/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# site.addsitedir (not a bare path) so that seernet's own .pth files (its editable install) apply too
echo "import site; site.addsitedir('$main_site')" > "$peer_site/seernet-venv.pth"
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install -r "$here/requirements.txt"
"$here/.venv/bin/python" - <<'PY'
import model_compression_toolkit as mct, torch
print(f"peers venv ready: model-compression-toolkit {mct.__version__}, torch {torch.__version__}")
PY
