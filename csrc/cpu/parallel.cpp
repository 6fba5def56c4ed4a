// parallel_run: see parallel.h for why this is not a plain at::parallel_for.
#include "parallel.h"

#include <ATen/Parallel.h>
#include <c10/util/ParallelGuard.h>

#include <algorithm>
#include <atomic>
#include <exception>

#if !defined(_OPENMP) && defined(__GNUC__) && !defined(_WIN32)
// libgomp's ABI (stable since GCC 4.9). Weak: null where no libgomp is loaded.
extern "C" {
void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags) __attribute__((weak));
int omp_get_thread_num(void) __attribute__((weak));
int omp_get_num_threads(void) __attribute__((weak));
}
#define FASTGAN_GOMP_SHIM 1
#endif

namespace fastgan {
namespace cpu {
namespace {

int64_t divup(int64_t a, int64_t b) { return (a + b - 1) / b; }

#ifdef FASTGAN_GOMP_SHIM
bool gomp_available() { return GOMP_parallel && omp_get_thread_num && omp_get_num_threads; }

struct Job {
  int64_t begin, end, grain;
  RangeFn fn;
  const void* ctx;
  std::atomic_flag failed = ATOMIC_FLAG_INIT;
  std::exception_ptr error;
};

// The body of the parallel region, as at::internal::invoke_parallel does it.
void run_team_member(void* data) {
  Job& job = *static_cast<Job*>(data);
  int64_t threads = omp_get_num_threads();
  if (job.grain > 0) threads = std::min(threads, divup(job.end - job.begin, job.grain));
  const int64_t tid = omp_get_thread_num();
  const int64_t chunk = divup(job.end - job.begin, threads);
  const int64_t b = job.begin + tid * chunk;
  if (tid >= threads || b >= job.end) return;
  try {
    at::internal::ThreadIdGuard tid_guard(static_cast<int>(tid));
    c10::ParallelGuard guard(true);
    job.fn(job.ctx, b, std::min(job.end, b + chunk));
  } catch (...) {
    if (!job.failed.test_and_set()) job.error = std::current_exception();
  }
}
#endif

}  // namespace

const char* parallel_backend() {
#if defined(_OPENMP)
  return "openmp";
#elif defined(FASTGAN_GOMP_SHIM)
  return gomp_available() ? "gomp" : "aten";
#else
  return "aten";
#endif
}

void parallel_run(int64_t begin, int64_t end, int64_t grain, RangeFn fn, const void* ctx) {
  if (begin >= end) return;
#ifdef FASTGAN_GOMP_SHIM
  const int64_t n = end - begin;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), grain > 0 ? divup(n, grain) : n);
  if (gomp_available() && threads > 1 && n > 1 && !at::in_parallel_region()) {
    Job job;
    job.begin = begin, job.end = end, job.grain = grain, job.fn = fn, job.ctx = ctx;
    GOMP_parallel(&run_team_member, &job, static_cast<unsigned>(threads), 0);
    if (job.error) std::rethrow_exception(job.error);
    return;
  }
#endif
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { fn(ctx, b, e); });
}

}  // namespace cpu
}  // namespace fastgan
