"""Builds kgqa_kernels._C ahead of time: the CPU kernels always, the CUDA kernels when a usable
CUDA toolkit and a CUDA build of torch are present (KGQA_FORCE_CPU=1 turns them off)."""
import glob
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _log(msg):
    print(f"kgqa-kernels build: {msg}", file=sys.stderr)


def _find_cuda_home():
    """cpp_extension guesses CUDA_HOME from the nvcc on PATH, which may be a wrapper script outside
    the toolkit (then linking fails with `cannot find -lcudart`); accept only a root that really
    holds a toolkit."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in filter(None, candidates):
        if os.path.isfile(os.path.join(root, "bin", "nvcc")) and os.path.isfile(
            os.path.join(root, "include", "cuda_runtime.h")
        ):
            return root
    return None


def _cuda_build_plan(cuda_sources):
    """Returns (use_cuda, reason)."""
    if os.environ.get("KGQA_FORCE_CPU", "0") not in ("", "0"):
        return False, "KGQA_FORCE_CPU is set"
    if not cuda_sources:
        return False, "no csrc/**/*.cu sources yet"
    import torch

    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    root = _find_cuda_home()
    if root is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    os.environ["CUDA_HOME"] = root
    # With no GPU to query, torch's arch detection fails; build for A100 and H100 by default.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    return True, f"CUDA toolkit at {root}, archs {os.environ['TORCH_CUDA_ARCH_LIST']}"


def _extensions():
    # csrc/emulation runs the CUDA kernels' code on the CPU for the tests: built in every variant.
    cpp_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp") + glob.glob("csrc/emulation/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    use_cuda, reason = _cuda_build_plan(cuda_sources)
    # cpp_extension reads CUDA_HOME when it is imported, so the plan comes first.
    from torch.utils import cpp_extension

    cxx_flags = ["-O3", "-fno-math-errno"]
    if sys.platform != "darwin":
        cxx_flags.append("-fopenmp")
    kwargs = dict(
        name="kgqa_kernels._C",
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_link_args=["-fopenmp"] if sys.platform != "darwin" else [],
    )
    if use_cuda:
        _log(f"building CPU + CUDA kernels ({reason})")
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        return [
            cpp_extension.CUDAExtension(
                sources=cpp_sources + cuda_sources,
                extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
                **kwargs,
            )
        ], cpp_extension
    _log(f"building the CPU-only extension ({reason})")
    return [cpp_extension.CppExtension(sources=cpp_sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)], cpp_extension


def _build_ext_class(cpp_extension):
    """torch's BuildExtension (ninja), with the CUDA sources compiled first.

    setuptools sorts the sources, and ninja starts its jobs in that order: csrc/cuda/ops.cu, the
    longest job by far (about 230 s for two archs on these 2-core machines, against about 45 s for
    each of the 8 C++ files), started 7th, and the build ended with it alone on one core. Started
    first, it runs beside the C++ files on the other core. Only the order the compiles start in
    changes: the objects are linked in setuptools' sorted order, as before."""

    class BuildExt(cpp_extension.BuildExtension.with_options(use_ninja=True)):
        def build_extension(self, ext):
            compile_ = self.compiler.compile

            def compile_cuda_first(sources, *args, **kwargs):
                first = sorted(range(len(sources)), key=lambda i: not sources[i].endswith(".cu"))  # stable
                objects = compile_([sources[i] for i in first], *args, **kwargs)
                in_order = [None] * len(sources)
                for obj, i in zip(objects, first, strict=True):
                    in_order[i] = obj
                return in_order

            self.compiler.compile = compile_cuda_first
            try:
                super().build_extension(ext)
            finally:
                self.compiler.compile = compile_

    return BuildExt


ext_modules, cpp_extension = _extensions()
setup(
    ext_modules=ext_modules,
    cmdclass={"build_ext": _build_ext_class(cpp_extension)},
)
