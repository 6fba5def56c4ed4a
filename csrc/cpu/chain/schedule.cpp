// The parallel schedules of the layer chain (see chain.h): one parallel region per call.
//
// Column schedule. Phase p of the chain (a layer, or the static quantisation of a layer's
// float input) is split into T equal parts, part t run by logical worker t. Between phases a
// counter barrier: every thread adds the number of parts it finished to one monotonic atomic
// and waits until it reaches T * (phases so far). Because the counter only grows and a thread
// adds its phase-p parts only after passing barrier p - 1, reaching T * p means every part of
// phase p is done: no reset, no sense flag, and it stays correct when the team has fewer
// threads than T (a thread then runs several parts of a phase before it waits). Thread t
// always computes the same columns, so its slice of every weight stays in its own L2 from one
// call to the next.
//
// Row schedule. Worker t owns rows [M t / T, M (t + 1) / T) and pushes them through every
// layer in tiles of kRowTile rows, the activations in its own scratch: no barrier at all.
// Chosen when each thread has many rows and the whole chain's weights fit in its L2.
//
// The one-region schedule needs a team whose members all run at once (parallel_backend()
// "openmp" or "gomp"); with the aten fallback the chain runs on the calling thread and each
// layer's kernel parallelises itself.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <thread>

#include "../parallel.h"
#include "chain.h"

namespace fastgan {
namespace cpu {
namespace chain {
namespace {

constexpr int64_t kRowTile = 64;
// Below this many multiply-adds per call a thread hand-off costs more than it saves.
constexpr double kMinParallelMacs = 32768.0;
// The row schedule needs the weights of the whole chain in each core's L2 (1-2 MiB on the
// machines this targets), with room for the activation tiles.
constexpr int64_t kRowScheduleWeightBytes = 768 * 1024;
constexpr int64_t kRowScheduleMinRows = 64;  // per thread

inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// What every worker of one call shares.
struct Context {
  const Layer* layers = nullptr;
  int count = 0;
  Act x;
  int64_t M = 0;
  float* y = nullptr;
  int64_t T = 1;
  // Column schedule: the activations between layers (ping-pong) and the quantised input of a
  // static int8 layer, in the calling thread's scratch.
  void* ping = nullptr;
  void* pong = nullptr;
  int8_t* quant = nullptr;

  std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  std::atomic_flag claimed = ATOMIC_FLAG_INIT;
  Error error;
  std::exception_ptr exception;

  void fail(int64_t layer, int64_t row) {
    if (!claimed.test_and_set()) error.layer = layer, error.row = row;
    failed.store(true, std::memory_order_release);
  }
  void fail(std::exception_ptr e) {
    if (!claimed.test_and_set()) exception = e;
    failed.store(true, std::memory_order_release);
  }
  bool ok() const { return !failed.load(std::memory_order_acquire); }
  // Adds `parts` finished parts and waits until `target`; false when a thread failed.
  bool arrive_and_wait(int64_t parts, int64_t target) {
    done.fetch_add(parts, std::memory_order_acq_rel);
    for (int spins = 0; done.load(std::memory_order_acquire) < target; ++spins) {
      if (!ok()) return false;
      if (spins < 4096) cpu_relax();
      else std::this_thread::yield();  // a descheduled team member: give it the core
    }
    return ok();
  }
};

int64_t max_width(const Layer* layers, int count) {
  int64_t w = 0;
  for (int l = 0; l < count; ++l) w = std::max({w, layers[l].N, layers[l].K});
  return w;
}

Act act_of(const void* data, int64_t rs, Store kind) {
  Act a;
  a.data = data, a.rs = rs, a.kind = kind;
  return a;
}

// Columns [lo, hi) of part t of T, cut at multiples of `unit`.
void column_part(int64_t N, int64_t unit, int64_t T, int64_t t, int64_t* lo, int64_t* hi) {
  const int64_t units = (N + unit - 1) / unit;
  *lo = std::min(N, units * t / T * unit);
  *hi = std::min(N, units * (t + 1) / T * unit);
}

// Logical workers [tb, te) of the column schedule, on one thread.
void run_columns(Context& c, int64_t tb, int64_t te) {
  int64_t phase = 0;
  auto barrier = [&] { return c.arrive_and_wait(te - tb, c.T * ++phase); };
  Act in = c.x;
  for (int l = 0; l < c.count; ++l) {
    const Layer& L = c.layers[l];
    if (L.wants_int8_input() && in.kind != Store::kI8) {
      for (int64_t t = tb; t < te; ++t) {
        const int64_t r = quantize_rows_static(in, L.K, L.in_scale, c.quant, c.M * t / c.T, c.M * (t + 1) / c.T);
        if (r >= 0) c.fail(l, r);
      }
      if (!barrier()) return;
      in = act_of(c.quant, L.K, Store::kI8);
    }
    const bool last = l + 1 == c.count;
    Out out;
    out.data = last ? static_cast<void*>(c.y) : (l % 2 ? c.pong : c.ping);
    out.ld = L.N, out.kind = L.out;
    for (int64_t t = tb; t < te; ++t) {
      int64_t n0, n1;
      column_part(L.N, L.column_unit(), c.T, t, &n0, &n1);
      const int64_t r = run_layer_slice(L, in, out, c.M, n0, n1);
      if (r >= 0) c.fail(l, r);
    }
    if (last || !barrier()) return;
    in = act_of(out.data, L.N, L.out);
  }
}

// Logical workers [tb, te) of the row schedule, on one thread.
void run_rows(Context& c, int64_t tb, int64_t te) {
  const int64_t width = max_width(c.layers, c.count);
  void* buf[2] = {thread_buffer(kSlotPing, kRowTile * width * 4), thread_buffer(kSlotPong, kRowTile * width * 4)};
  for (int64_t t = tb; t < te; ++t) {
    for (int64_t m0 = c.M * t / c.T, m_end = c.M * (t + 1) / c.T; m0 < m_end; m0 += kRowTile) {
      const int64_t rows = std::min(kRowTile, m_end - m0);
      Act in = c.x;
      in.data = static_cast<const char*>(c.x.data) + m0 * c.x.rs * store_size(c.x.kind);
      for (int l = 0; l < c.count; ++l) {
        if (!c.ok()) return;
        const Layer& L = c.layers[l];
        if (L.wants_int8_input() && in.kind != Store::kI8) {
          int8_t* q = static_cast<int8_t*>(thread_buffer(kSlotQuant, rows * L.K));
          const int64_t r = quantize_rows_static(in, L.K, L.in_scale, q, 0, rows);
          if (r >= 0) return c.fail(l, m0 + r);
          in = act_of(q, L.K, Store::kI8);
        }
        const bool last = l + 1 == c.count;
        Out out;
        out.data = last ? static_cast<void*>(c.y + m0 * L.N) : buf[l % 2];
        out.ld = L.N, out.kind = L.out;
        const int64_t r = run_layer_slice(L, in, out, rows, 0, L.N);
        if (r >= 0) return c.fail(l, m0 + r);
        in = act_of(out.data, L.N, L.out);
      }
    }
  }
}

struct Worker {
  Context* c;
  Schedule s;
};

void run_part(const void* ctx, int64_t tb, int64_t te) {
  const Worker& w = *static_cast<const Worker*>(ctx);
  try {
    if (w.s == Schedule::kRows) run_rows(*w.c, tb, te);
    else run_columns(*w.c, tb, te);
  } catch (...) {
    w.c->fail(std::current_exception());
  }
}

double chain_macs(const Layer* layers, int count, int64_t M) {
  double macs = 0;
  for (int l = 0; l < count; ++l) macs += static_cast<double>(layers[l].N) * layers[l].K;
  return macs * M;
}

}  // namespace

Schedule choose_schedule(const Layer* layers, int count, int64_t M, int threads, Schedule requested) {
  if (requested != Schedule::kAuto) return requested;
  int64_t bytes = 0;
  for (int l = 0; l < count; ++l) bytes += layers[l].weight_bytes();
  return M >= kRowScheduleMinRows * threads && bytes <= kRowScheduleWeightBytes ? Schedule::kRows : Schedule::kColumns;
}

Error run(const Layer* layers, int count, const Act& x, int64_t M, float* y, Schedule schedule) {
  Context c;
  c.layers = layers, c.count = count, c.x = x, c.M = M, c.y = y;
  if (M <= 0 || count <= 0) return c.error;
  const bool one_region = std::strcmp(parallel_backend(), "aten") != 0;
  int64_t T = at::in_parallel_region() || !one_region ? 1 : at::get_num_threads();
  if (chain_macs(layers, count, M) < kMinParallelMacs) T = 1;
  c.T = T;
  const Schedule s = choose_schedule(layers, count, M, static_cast<int>(T), schedule);
  if (s == Schedule::kColumns && count > 1) {
    const int64_t width = max_width(layers, count);
    c.ping = thread_buffer(kSlotPing, M * width * 4);
    c.pong = thread_buffer(kSlotPong, M * width * 4);
    c.quant = static_cast<int8_t*>(thread_buffer(kSlotQuant, M * width));
  } else if (s == Schedule::kColumns) {
    c.quant = static_cast<int8_t*>(thread_buffer(kSlotQuant, M * layers[0].K));
  }
  Worker w{&c, s};
  if (T == 1) run_part(&w, 0, 1);
  else parallel_run(0, T, 1, &run_part, &w);
  if (c.exception) std::rethrow_exception(c.exception);
  return c.error;
}

}  // namespace chain
}  // namespace cpu
}  // namespace fastgan
