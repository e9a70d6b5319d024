// Elementwise t-norms / t-conorms shared by intersect, union and follow_intersect.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <string>

#include "portability.h"

namespace kgqa {

enum class TNorm { Min, Max, Product, ProbSum };

// intersect takes "min" | "product"; union takes "max" | "product" (the probabilistic sum).
inline TNorm parse_tnorm(const char* op, c10::string_view name, bool is_union) {
  if (!is_union && name == "min") return TNorm::Min;
  if (is_union && name == "max") return TNorm::Max;
  if (name == "product") return is_union ? TNorm::ProbSum : TNorm::Product;
  TORCH_CHECK(false, op, "(): tnorm must be ", is_union ? "'max'" : "'min'", " or 'product', got '",
              std::string(name), "'");
}

// NaN wins, as in torch.minimum / amin.
template <typename T>
KGQA_HD inline T nan_min(T a, T b) { return (a < b || a != a) ? a : b; }
template <typename T>
KGQA_HD inline T nan_max(T a, T b) { return (a > b || a != a) ? a : b; }

}  // namespace kgqa
