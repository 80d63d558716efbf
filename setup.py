"""Build of the optional compiled hot path (engine/broker/_hotpath.pyx); metadata is in setup.cfg.

The extension is optional, like msgpack's and aiohttp's: without Cython, a C compiler or
Linux, or with ENGINE_NO_EXTENSIONS=1 set at install time, the install still succeeds and
the broker runs the pure-Python twin (engine/broker/hotpath.py), saying so in one log line.
It links no libzmq: it calls the copy pyzmq loaded, found at run time (_hotpath_core.h).
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            _skipped(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler failed: the pure-Python twin serves
            _skipped(exc)


def _skipped(exc):
    sys.stderr.write(f"warning: the broker's compiled hot path was not built ({exc}); "
                     "the broker will run its pure-Python twin\n")


def extensions():
    if os.environ.get("ENGINE_NO_EXTENSIONS") or not sys.platform.startswith("linux"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        _skipped(exc)
        return []
    ext = Extension("engine.broker._hotpath", ["engine/broker/_hotpath.pyx"],
                    depends=["engine/broker/_hotpath_core.h"], include_dirs=["engine/broker"],
                    extra_compile_args=["-O2"], libraries=["dl"])
    try:
        return cythonize([ext], compiler_directives={"language_level": 3}, quiet=True)
    except Exception as exc:
        _skipped(exc)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
