"""Run pytest against another build of the extension: ``python scripts/pytest_with_ext.py
EXT.so [pytest args...]``.

`make asan` uses it for an ASan build of ``tiny_backprop._C`` kept outside the source tree
(build/asan-ext/): the extension is loaded from EXT.so and registered as
``tiny_backprop._C`` before anything imports the package, so the tests use it while the
in-place build stays untouched.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    path = os.path.abspath(argv[0])
    loader = importlib.machinery.ExtensionFileLoader("tiny_backprop._C", path)
    spec = importlib.util.spec_from_file_location("tiny_backprop._C", path, loader=loader)
    if spec is None:
        print(f"cannot load {path}", file=sys.stderr)
        return 2
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_backprop._C"] = module
    loader.exec_module(module)

    import tiny_backprop
    from tiny_backprop import _C

    if os.path.abspath(_C.__file__ or "") != path:
        print(f"tiny_backprop._C is {_C.__file__}, not {path}", file=sys.stderr)
        return 2
    tiny_backprop._C = _C
    print(f"pytest_with_ext: tiny_backprop._C from {path}", flush=True)

    import pytest

    return int(pytest.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
