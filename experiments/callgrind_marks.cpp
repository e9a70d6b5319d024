// Marks for experiments/bounds_instructions.py: under `valgrind --tool=callgrind --instr-atstart=no`,
// count_start() turns counting on with zeroed counters and count_stop(label) turns it off and writes
// the counts to a file whose description names the label. Without valgrind's header, or outside
// valgrind, they do nothing.
#include <torch/extension.h>

#include <string>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#define CALLGRIND_DUMP_STATS_AT(label)
#endif

void count_start() {
  CALLGRIND_START_INSTRUMENTATION;
  CALLGRIND_ZERO_STATS;
}

void count_stop(const std::string& label) {
  CALLGRIND_STOP_INSTRUMENTATION;
  CALLGRIND_DUMP_STATS_AT(label.c_str());
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("count_start", &count_start);
  m.def("count_stop", &count_stop);
}
