// Which instruction set the CPU kernels run with. The package is built for baseline x86-64 (SSE2),
// so a wheel runs on any x86-64 CPU; the hottest loops (follow's pulls and dr, follow_intersect)
// are also compiled for AVX2 in avx2.cpp and chosen here at run time. The AVX2 copies use no FMA:
// the same multiplies and adds in the same order, so both give bitwise the same results
// (tests/ops/test_follow.py and test_follow_intersect.py check it). KGQA_CPU_ISA=baseline in the
// environment keeps the baseline copies (read at each call, so a test can compare both in one
// process).
#pragma once

#include <cstdlib>
#include <cstring>

// AVX2 copies are built with GCC's target pragma on x86-64 (clang and other targets: baseline only).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KGQA_HAVE_AVX2_KERNELS 1
#else
#define KGQA_HAVE_AVX2_KERNELS 0
#endif

namespace kgqa {

enum class CpuIsa { baseline, avx2 };

inline bool cpu_supports_avx2() {
#if KGQA_HAVE_AVX2_KERNELS
  static const bool supported = __builtin_cpu_supports("avx2");
  return supported;
#else
  return false;
#endif
}

// AVX2 where it was built, the CPU has it and KGQA_CPU_ISA is not "baseline".
inline CpuIsa cpu_isa() {
  const char* v = std::getenv("KGQA_CPU_ISA");
  if (v != nullptr && std::strcmp(v, "baseline") == 0) return CpuIsa::baseline;
  return cpu_supports_avx2() ? CpuIsa::avx2 : CpuIsa::baseline;
}

inline const char* cpu_isa_name(CpuIsa isa) { return isa == CpuIsa::avx2 ? "avx2" : "baseline"; }

// kgqa::cpu::fn(args...), or kgqa::cpu_avx2::fn(args...) where cpu_isa() says so (its caller
// declares the cpu_avx2 copy, which avx2.cpp defines).
#if KGQA_HAVE_AVX2_KERNELS
#define KGQA_BY_ISA(fn, ...) \
  (::kgqa::cpu_isa() == ::kgqa::CpuIsa::avx2 ? ::kgqa::cpu_avx2::fn(__VA_ARGS__) : ::kgqa::cpu::fn(__VA_ARGS__))
#else
#define KGQA_BY_ISA(fn, ...) ::kgqa::cpu::fn(__VA_ARGS__)
#endif

}  // namespace kgqa
