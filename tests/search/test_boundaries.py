"""search/ is a pure algorithm package: it never imports seernet or predictor."""

import subprocess
import sys


def test_search_does_not_import_the_application():
    code = (
        "import sys, search.solver, search.sampler, search.baselines, search.levels; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('seernet', 'predictor')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
