// Every GPU op (one header per op: its kernels and host code), registered in library m with
// kernels run by Launcher: csrc/cuda/ops.cu (the CUDA dispatch key) and csrc/emulation/ops.cpp
// (kgqa_kernels_emu on the CPU). A new op adds its header and its register line here.
#pragma once

#include "count.cuh"
#include "follow.cuh"
#include "follow_intersect.cuh"
#include "follow_max.cuh"
#include "follow_push.cuh"
#include "intersect.cuh"
#include "launch_plan.cuh"
#include "select_extreme.cuh"

#define KGQA_REGISTER_GPU_OPS(m, Launcher)          \
  KGQA_REGISTER_GPU_FOLLOW(m, Launcher)             \
  KGQA_REGISTER_GPU_FOLLOW_PUSH(m, Launcher)        \
  KGQA_REGISTER_GPU_FOLLOW_MAX(m, Launcher)         \
  KGQA_REGISTER_GPU_INTERSECT(m, Launcher)          \
  KGQA_REGISTER_GPU_FOLLOW_INTERSECT(m, Launcher)  \
  KGQA_REGISTER_GPU_COUNT(m, Launcher)              \
  KGQA_REGISTER_GPU_SELECT_EXTREME(m, Launcher)     \
  KGQA_REGISTER_GPU_LAUNCH_PLAN(m, Launcher)
