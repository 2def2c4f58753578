#!/usr/bin/env bash
# Idempotent set-up: Debian's Fashion-MNIST (if missing), a virtual environment, seernet.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# Reinstall only when the dependency list changed: pip's resolver takes a while even when idle.
stamp=".venv/.seernet-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import seernet" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,onnx,ray,test]'
  echo "$want" > "$stamp"
fi
