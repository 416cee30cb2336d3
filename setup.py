"""Build of logq's optional compiled codec (logq/codec/compiled.pyx).

All metadata lives in pyproject.toml; this file only adds the Cython extension. The
extension is optional: when Cython, a C compiler or the Python headers are missing, or the
build fails for any other reason, the installation goes on without it and logq uses its
pure-Python codec (``logq --version`` says which one is in use). ``LOGQ_NO_EXTENSIONS=1``
skips the build on purpose.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": True,  # the codec parses hostile bytes: keep every check Cython offers
    "wraparound": False,
    "initializedcheck": True,
}


def _warn(what: str, error: BaseException) -> None:
    print(
        f"logq: {what} failed ({type(error).__name__}: {error}); installing without the compiled codec, "
        "the pure-Python codec will be used",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """build_ext that never fails the installation: a failed extension is left out."""

    def run(self) -> None:
        if os.environ.get("LOGQ_NO_EXTENSIONS") == "1":
            print("logq: LOGQ_NO_EXTENSIONS=1, not building the compiled codec", file=sys.stderr)
            self.extensions = []
            return
        try:
            super().run()
        except Exception as e:  # no compiler at all (DistutilsPlatformError) or anything else
            _warn("building the compiled codec", e)

    def build_extension(self, ext: Extension) -> None:
        try:
            if any(str(s).endswith(".pyx") for s in ext.sources):
                from Cython.Build import cythonize

                (generated,) = cythonize(
                    [ext],
                    compiler_directives=DIRECTIVES,
                    build_dir=os.path.join(self.build_temp, "cython"),
                    quiet=True,
                )
                ext.sources = generated.sources  # the .c file; keep setuptools' own Extension object
            super().build_extension(ext)
        except Exception as e:
            _warn(f"building {ext.name}", e)

    def get_outputs(self) -> list[str]:
        # Only what was really built (a skipped extension has no file to install).
        return [p for p in super().get_outputs() if os.path.exists(p)]


setup(
    ext_modules=[
        Extension("logq.codec.compiled", ["logq/codec/compiled.pyx"], optional=True),
        Extension("logq.codec.columns", ["logq/codec/columns.pyx"], optional=True),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
