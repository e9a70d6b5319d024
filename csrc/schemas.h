// Every op's schema, once (each in the header named after its op): registered as kgqa_kernels
// (csrc/kgqa.cpp) and, for the CPU emulation of the CUDA kernels, as kgqa_kernels_emu
// (csrc/emulation/ops.cpp). A new op adds its header here.
#pragma once

#include "count.h"
#include "follow.h"
#include "follow_intersect.h"
#include "follow_max.h"
#include "follow_push.h"
#include "intersect.h"
#include "select_extreme.h"
#include "work_plan.h"

#define KGQA_DEFINE_SCHEMAS(m)      \
  KGQA_SCHEMAS_FOLLOW(m)            \
  KGQA_SCHEMAS_FOLLOW_PUSH(m)       \
  KGQA_SCHEMAS_FOLLOW_MAX(m)        \
  KGQA_SCHEMAS_INTERSECT(m)         \
  KGQA_SCHEMAS_FOLLOW_INTERSECT(m) \
  KGQA_SCHEMAS_COUNT(m)             \
  KGQA_SCHEMAS_SELECT_EXTREME(m)    \
  KGQA_SCHEMAS_LAUNCH_PLAN(m)
