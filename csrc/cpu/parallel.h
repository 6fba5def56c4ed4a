// Intra-op parallelism for the CPU kernels, on torch's own OpenMP thread team.
//
// at::parallel_for is an inline template: its `#pragma omp parallel` only exists in code
// compiled with -fopenmp, and setup.py builds the extension without it, so in this
// extension at::parallel_for would silently run on one thread. parallel_for below keeps
// at::parallel_for's contract (f(begin, end) over chunks of [begin, end), at most
// at::get_num_threads() threads, serial inside another parallel region, the first
// exception rethrown) and runs it:
//   * through at::parallel_for when this file is compiled with OpenMP (-fopenmp);
//   * else through libgomp's GOMP_parallel, the entry point `#pragma omp parallel`
//     compiles to, found at run time in the libgomp torch itself loaded: the same
//     threads, spin-waits and thread count as torch's intra-op pool;
//   * else (torch without libgomp) through at::parallel_for, whatever it does there.
#pragma once

#include <cstdint>

namespace fastgan {
namespace cpu {

using RangeFn = void (*)(const void* ctx, int64_t begin, int64_t end);

// Calls fn(ctx, b, e) over chunks of [begin, end) in parallel (see above).
void parallel_run(int64_t begin, int64_t end, int64_t grain, RangeFn fn, const void* ctx);

// Which mechanism parallel_run uses in this build: "openmp", "gomp" or "aten".
const char* parallel_backend();

template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  parallel_run(begin, end, grain,
               [](const void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); }, &f);
}

}  // namespace cpu
}  // namespace fastgan
