"""The built extension (kgqa_kernels._C) runs on any x86-64 CPU: only its AVX2 copy of the CPU
loops (csrc/cpu/avx2.cpp, namespace kgqa::cpu_avx2) may hold AVX instructions. An inline function of
torch or the standard library compiled there for AVX2 could be the one copy the linker keeps and
crash a CPU without AVX2 (csrc/cpu/isa.h); this reads the machine code to make sure none is."""
import platform
import re
import shutil
import subprocess

import pytest

import kgqa_kernels as kk


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the AVX2 copy exists on x86-64 only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_only_the_avx2_copy_uses_avx():
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", kk._C.__file__], capture_output=True,
                         text=True, check=True).stdout
    function, vex_elsewhere, vex_in_copy = None, {}, 0
    for line in dis.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            function = head.group(1)
            continue
        if function is None or "\t" not in line:
            continue
        if re.match(r"v[a-z]", line.rsplit("\t", 1)[-1]):  # VEX-encoded: AVX and later
            if "cpu_avx2" in function:
                vex_in_copy += 1
            else:
                vex_elsewhere[function] = vex_elsewhere.get(function, 0) + 1
    assert not vex_elsewhere, f"AVX instructions outside kgqa::cpu_avx2: {sorted(vex_elsewhere)[:5]}"
    if kk._C.cpu_isa() == "avx2" or vex_in_copy:
        assert vex_in_copy > 1000  # the copy is there and compiled for AVX2
