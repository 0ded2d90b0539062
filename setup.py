"""Build fastbp._core from fastbp/_core.pyx and the C kernels in src_c/.

Environment switches (all off by default):
  FASTBP_NATIVE=1    add -march=native (fast on the build machine, not portable)
  FASTBP_DEBUG=1     Cython bounds/wraparound checks on, -O0 -g, asserts kept
  FASTBP_SANITIZE=1  build the C kernels with AddressSanitizer + UBSan (-O1 -g)
  FASTBP_BUILD_JOBS=n  compile n sources at once (default: the usable cores)
"""
import glob
import os
from concurrent.futures import ThreadPoolExecutor

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


debug = _flag("FASTBP_DEBUG")
sanitize = _flag("FASTBP_SANITIZE")

# -fno-trapping-math lets GCC if-convert (and so vectorise) the clamps and
# selects in the nonlinearities; unlike -ffast-math it changes no computed value.
compile_args = ["-std=c99", "-O3", "-fno-trapping-math", "-fno-strict-aliasing",
                "-Wall", "-Wno-unused-function", "-pthread"]
link_args = ["-pthread"]        # the thread team (src_c/team.c)
if _flag("FASTBP_NATIVE"):
    compile_args.append("-march=native")
if debug:
    compile_args = [a for a in compile_args if a != "-O3"] + ["-O0", "-g", "-UNDEBUG"]
if sanitize:
    # -fno-wrapv undoes the -fwrapv in Python's own CFLAGS, which would make
    # signed overflow defined and so invisible to UBSan.
    compile_args = [a for a in compile_args if a != "-O3"] + [
        "-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv",
        "-fsanitize=address,undefined,float-cast-overflow",
        "-fno-sanitize-recover=undefined,float-cast-overflow"]
    link_args += ["-fsanitize=address,undefined,float-cast-overflow"]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": not debug,
    "embedsignature": True,
}

extension = Extension(
    "fastbp._core",
    sources=["fastbp/_core.pyx"] + sorted(glob.glob("src_c/*.c")),
    include_dirs=["src_c", numpy.get_include()],
    # the NumPy C API of fastbp/_arrays.pxi, without the deprecated names
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                   # the oldest NumPy fastbp runs on, whose API has NEP 49's
                   # allocators (fastbp/_pool.pxi)
                   ("NPY_TARGET_VERSION", "NPY_1_23_API_VERSION")],
    depends=sorted(glob.glob("src_c/*.h")) + sorted(glob.glob("fastbp/*.pxi")),
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)


class ParallelBuildExt(build_ext):
    """build_ext compiling the extension's sources in parallel.

    setuptools compiles one extension's sources one after another; fastbp has
    one extension of a dozen sources, a few of them heavy (the Cython module,
    the engine and the kernels, each compiled for three instruction sets): on
    two cores a clean build took 61 s this way against 86 s."""

    def build_extensions(self):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        jobs = int(os.environ.get("FASTBP_BUILD_JOBS") or cores or 1)
        compile_all = self.compiler.compile

        def compile_parallel(sources, output_dir=None, **options):
            # the object folders first: distutils' mkpath is not safe to race
            for obj in self.compiler.object_filenames(sources, output_dir=output_dir):
                os.makedirs(os.path.dirname(obj) or ".", exist_ok=True)
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                objects = pool.map(lambda src: compile_all([src], output_dir=output_dir, **options),
                                   sources)
                return [obj for group in objects for obj in group]

        if jobs > 1:
            self.compiler.compile = compile_parallel
        super().build_extensions()


setup(
    cmdclass={"build_ext": ParallelBuildExt},
    packages=["fastbp", "fastbp.reference", "fastbp.bench", "fastbp.training"],
    # PEP 561: the package ships its type hints
    package_data={"fastbp": ["py.typed"]},
    ext_modules=cythonize([extension], compiler_directives=directives,
                          include_path=["fastbp"], force=debug or sanitize),
    zip_safe=False,
)
