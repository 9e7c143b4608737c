"""Build script for tiny-backprop's C extension ``tiny_backprop._C``.

Environment switches (msgspec-style):
  TB_DEBUG=1     build with -O0 -g (and keep asserts)
  TB_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer (UB fatal); the
                 interpreter is not instrumented, so run it with LD_PRELOAD of libasan
                 (and libstdc++): see `make asan`, which builds this into build/asan-ext
  CI=true        add -Werror
The extension never links against libtorch: tensors never enter C.
"""

import glob
import os

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


extra_compile_args = ["-std=c11", "-Wall", "-Wextra"]
extra_link_args: list[str] = []
undef_macros: list[str] = []
if _flag("CI"):
    extra_compile_args.append("-Werror")
if _flag("TB_DEBUG"):
    extra_compile_args += ["-O0", "-g"]
    undef_macros.append("NDEBUG")
else:
    extra_compile_args.append("-O2")
if _flag("TB_SANITIZE"):
    # UB is fatal (not just printed), and -g gives ASan reports file:line.
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    extra_compile_args += san + ["-g"]
    extra_link_args += san

sources = sorted(glob.glob("csrc/*.c")) + sorted(glob.glob("csrc/core/*.c"))

setup(
    ext_modules=[
        Extension(
            "tiny_backprop._C",
            sources=sources,
            include_dirs=["csrc", "csrc/core"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            undef_macros=undef_macros,
        )
    ]
)
