// Schemas of follow_max: one hop whose reduction over the facts into an entity is a max or a min
// (follow(..., reduce="max" | "min")), and its backward; and the per-fact arithmetic every backend
// shares (MaxTerm), so that forward and backward, CPU and GPU, agree on which fact wins.
#pragma once

#include <limits>

#include "portability.h"

#define KGQA_SCHEMAS_FOLLOW_MAX(m)                                                                          \
  /* y[o, b] = max (min with `minimum`) over facts (s, p, o) of r[p, b] * (w * x[s, b]), or with `add` */ \
  /* (x[s, b] + r[p, b]) + w; 0 where no fact reaches o   (inverse: s and o swapped). x [E, B], r [R, B] */ \
  m.def("follow_max(Tensor x, Tensor r, Tensor[] kb, bool inverse, bool minimum, bool add) -> Tensor");    \
  /* (dx [E, B], dr [R, B], dw [facts] in the subject order, empty unless need_w): grad [E, B] of y   */  \
  /* goes to the facts whose term equals y[o, b], split evenly among them (torch's scatter_reduce)    */  \
  m.def("follow_max_backward(Tensor x, Tensor r, Tensor grad, Tensor[] kb, bool inverse, bool minimum, " \
        "bool add, bool need_w) -> (Tensor, Tensor, Tensor)");

namespace kgqa {

// One fact's term and its derivatives, in the accumulation type. The product is formed as
// r * (w * x), the order of every follow kernel (docs/ops.md), and the sum as (x + r) + w; the
// backward recomputes each term the same way, so a fact wins in the backward exactly when it won
// in the forward (the best is kept in acc_t, never rounded to a 16-bit output first).
template <typename acc_t>
struct MaxTerm {
  // Runtime flags: the CPU loops construct a MaxTerm from compile-time constants (with_max_mode in
  // csrc/cpu/follow_max.cpp), so the compiler folds them out of the inner loops.
  bool minimum, add;

  KGQA_HD acc_t term(acc_t x, acc_t r, acc_t w) const { return add ? (x + r) + w : r * (w * x); }
  KGQA_HD acc_t d_x(acc_t r, acc_t w) const { return add ? acc_t(1) : r * w; }
  KGQA_HD acc_t d_r(acc_t x, acc_t w) const { return add ? acc_t(1) : w * x; }
  KGQA_HD acc_t d_w(acc_t x, acc_t r) const { return add ? acc_t(1) : r * x; }

  // The best before any fact: -inf for max, +inf for min (a term equal to it still counts once).
  KGQA_HD acc_t start() const {
    return minimum ? std::numeric_limits<acc_t>::infinity() : -std::numeric_limits<acc_t>::infinity();
  }
  // Folds term t into the running best and its number of ties. NaN wins and stays (as torch's amax
  // and amin propagate it), and then no fact ties with it, so no gradient flows there.
  // Every compare evaluated and combined bitwise, then selects: no control flow, so that a loop
  // over the batch vectorises (with && and ?: chains GCC left it scalar).
  KGQA_HD void take(acc_t t, acc_t& best, acc_t& ties) const {
    const bool tie = t == best, nan = t != t;
    const bool beats = minimum ? t < best : t > best;
    const bool better = (!tie) & (nan | ((best == best) & beats));
    // Selects of values computed unconditionally (an add under a condition is not if-converted).
    const acc_t counted = ties + (tie ? acc_t(1) : acc_t(0));
    ties = better ? (nan ? acc_t(0) : acc_t(1)) : counted;
    best = better ? t : best;
  }
  // A row's gradient share per winning fact: grad / ties (0 where no fact wins).
  KGQA_HD static acc_t share(acc_t grad, acc_t ties) { return ties > acc_t(0) ? grad / ties : acc_t(0); }
};

}  // namespace kgqa
