/*
 * sched_sampler.c - compiles src/sched/sampler.c into the library.
 * TODO(infer): delete this file once CMakeLists.txt globs the src/sched folder.
 */
#include "sched/sampler.c"
