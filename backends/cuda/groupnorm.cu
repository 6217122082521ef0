// GroupNorm forward for the `cupy` backend, second design (host side: backends/cupy_backend.py;
// plan: backends/_launch.py; NumPy model of the same arithmetic in the same order:
// backends/_cuda_model.py, which the tests verify on the CPU).
//
// Semantics are torch's: x viewed as (N, C, S), groups of cpg = C / G channels, biased
// variance, eps inside the square root, per-channel affine. Statistics in float for half,
// bfloat16 and float, in double for double (Acc<T>).
//
// ONE persistent kernel, gn_forward, per call (plus nothing: the workspace resets itself).
// Its blocks take work items from a queue (an atomic counter), in item order:
//   fused plan   item g = group g: statistics, then normalize (the second read hits L1/L2).
//   split plan   per wave of W groups (W * group bytes <= a quarter of L2): W*K stats items
//                (g, k), then W*K normalize items (g, k): chunk k of K of group g.
// A stats item writes its chunk's (count, mean, M2), fences, and takes a ticket on its
// group; the block that draws the last ticket merges the group's K partials (warp 0: lane
// l merges partials l, l+32, ... in order, then a shuffle-down tree: a fixed order, so the
// result does not depend on which block came last: bitwise deterministic), publishes mean
// and rstd, fences, and bumps the ticket to K + 1. A normalize item waits for K + 1, reads
// the two numbers (ld.cg: L2, never a stale L1 line), and bumps the ticket; the last of the
// K resets it to 0. Deadlock-free with any grid: items are claimed in queue order, every
// stats item of a group precedes its normalize items and never waits, and a claimed item
// belongs to a running block. The block that claims the last index past the end resets the
// queue to 0. So the workspace (queue, tickets) is zero again after every call: no memset,
// no host synchronization, capturable in a CUDA graph (one workspace per stream: the host
// keys it by stream).
//
// Addressing: a group is a 2-D array of items, major x minor; an item is VEC elements
// adjacent in memory along the minor axis. Contiguous/strided (planar): major = channel,
// minor = position. Channels-last (channel stride the smaller): major = position, minor =
// channel, so VEC > 1 reads VEC adjacent channels (vectorized across channels). A thread
// walks its items with incremental (major, minor) and a running element offset: no divide
// or modulo per element (one pair per work item).
//
// Statistics per thread: U items in flight (4 vector loads, or 16 / VEC scalar ones), then
// the batch's moments in registers, two-pass about its first element (exact for a constant
// batch), and one Chan merge into the thread's moments: one divide per U*VEC elements. Warp: Chan merges by
// __shfl_down_sync (offsets 16..1); block: warp results through shared memory, merged by
// warp 0 the same way. Normalize: (x - mean) * (rstd * w[c]) + b[c] in Acc, rounded once;
// rstd * w and b per channel staged in shared memory when the group's channels fit;
// y written with streaming stores (st.global.cs).
// NaN/Inf propagate through mean and M2; a constant group has M2 == 0 exactly.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define GN_TABLE_BYTES 8192         // shared memory for the per-channel (scale, shift) table

namespace gn {

template <typename T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }

template <typename T> __device__ __forceinline__ T narrow(typename Acc<T>::type v);
template <> __device__ __forceinline__ __half narrow<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ float narrow<float>(float v) { return v; }
template <> __device__ __forceinline__ double narrow<double>(double v) { return v; }

// Raw bits of an item (VEC elements): one load or store instruction.
template <int BYTES> struct Raw;
template <> struct Raw<2> { typedef unsigned short type; };
template <> struct Raw<4> { typedef unsigned int type; };
template <> struct Raw<8> { typedef uint2 type; };
template <> struct Raw<16> { typedef uint4 type; };

template <typename T, int VEC> union Item {
    typename Raw<sizeof(T) * VEC>::type bits;
    T v[VEC];
};

template <typename A> struct Moments { A count, mean, m2; };

template <typename A> __device__ __forceinline__ Moments<A> merge(Moments<A> a, Moments<A> b) {
    if (b.count == A(0)) return a;
    if (a.count == A(0)) return b;
    Moments<A> out;
    out.count = a.count + b.count;
    A delta = b.mean - a.mean;
    A share = b.count / out.count;
    out.mean = a.mean + delta * share;
    out.m2 = a.m2 + b.m2 + delta * delta * a.count * share;
    return out;
}

template <typename A> __device__ __forceinline__ Moments<A> warp_merge(Moments<A> m) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        Moments<A> other;
        other.count = __shfl_down_sync(0xffffffffu, m.count, offset);
        other.mean = __shfl_down_sync(0xffffffffu, m.mean, offset);
        other.m2 = __shfl_down_sync(0xffffffffu, m.m2, offset);
        m = merge(m, other);
    }
    return m;
}

// Every thread of the block gets the block's moments. blockDim.x is a multiple of 32.
template <typename A> __device__ Moments<A> block_merge(Moments<A> m, Moments<A>* warps) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    m = warp_merge(m);
    if (lane == 0) warps[warp] = m;
    __syncthreads();
    if (warp == 0) {
        Moments<A> zero = {A(0), A(0), A(0)};
        m = warp_merge(lane < nwarps ? warps[lane] : zero);
        if (lane == 0) warps[32] = m;
    }
    __syncthreads();
    m = warps[32];
    __syncthreads();  // warps[] is reused by the next item
    return m;
}

// The moments of n values held in registers: two-pass about the first (exact for a constant batch).
template <typename A, int N> __device__ __forceinline__ Moments<A> batch(const A (&v)[N], int n) {
    const A pivot = v[0];
    A sum = A(0);
#pragma unroll
    for (int j = 0; j < N; ++j) if (j < n) sum += v[j] - pivot;
    const A inv = A(1) / A(n);
    const A shift = sum * inv;
    A m2 = A(0);
#pragma unroll
    for (int j = 0; j < N; ++j) if (j < n) { A d = (v[j] - pivot) - shift; m2 += d * d; }
    Moments<A> m = {A(n), pivot + shift, m2};
    return m;
}

// One side (x or y) of the item addressing: element strides of sample, major and minor.
struct Side { long long n, major, minor; };

// The walk of one thread over items start, start + T, ... of a group: (major, minor) and the
// element offsets (x and y) of the current item, advanced without a divide (32-bit counters:
// the host keeps majors and minors below 2^31). Linear: the group is one arithmetic progression in x
// and in y (planar layouts): statistics need no channel there, so only offsets step.
struct Walk {
    int major, minor, minors, step_major, step_minor;
    long long ox, oy, step_x, step_y, wrap_x, wrap_y;
    bool linear;
    __device__ __forceinline__ void begin(long long item, long long minors_, long long threads, long long base_x,
                                          long long base_y, Side sx, Side sy, int vec, bool linear_) {
        linear = linear_;
        minors = (int)minors_;
        major = (int)(item / minors_); minor = (int)(item % minors_);
        step_major = (int)(threads / minors_); step_minor = (int)(threads % minors_);
        ox = base_x + major * sx.major + (long long)minor * vec * sx.minor;
        oy = base_y + major * sy.major + (long long)minor * vec * sy.minor;
        step_x = step_major * sx.major + (long long)step_minor * vec * sx.minor;
        step_y = step_major * sy.major + (long long)step_minor * vec * sy.minor;
        wrap_x = sx.major - (long long)minors * vec * sx.minor;
        wrap_y = sy.major - (long long)minors * vec * sy.minor;
    }
    // CHANNEL: keep (major, minor) for the channel; a linear walk without it only steps offsets
    // (its wraps are zero: the general steps equal T items there).
    template <bool CHANNEL> __device__ __forceinline__ void advance() {
        ox += step_x; oy += step_y;
        if (linear && !CHANNEL) return;
        major += step_major; minor += step_minor;
        if (minor >= minors) { minor -= minors; major += 1; ox += wrap_x; oy += wrap_y; }
    }
};

struct Problem {
    long long groups, cpg, positions;   // G per sample, channels per group, S
    long long majors, minors;           // a group's items: majors x minors (minors in items)
    int inner;                          // channels-last: major = position, minor = channel
    bool linear;                        // each group one arithmetic progression in x and y (no wrap)
    Side sx, sy;                        // element strides
    long long items;                    // items per group = majors * minors
};

// Items in flight per thread: 4 vectors, or enough scalars for 16 elements (one Chan merge,
// with its divide, per batch). backends/_launch.py `unroll` says the same.
template <int VEC> struct Unroll { enum { value = VEC * 4 >= 16 ? 4 : 16 / VEC }; };

// The thread's moments over items start + t, start + t + T, ... < stop. LINEAR: the walk
// steps offsets only.
template <typename T, int VEC, bool LINEAR>
__device__ Moments<typename Acc<T>::type> thread_moments(const T* __restrict__ x, const Problem& p, long long base_x,
                                                         long long start, long long stop) {
    typedef typename Acc<T>::type A;
    typedef typename Raw<sizeof(T) * VEC>::type R;
    enum { U = Unroll<VEC>::value };
    Moments<A> m = {A(0), A(0), A(0)};
    const long long threads = blockDim.x;
    long long i = start + threadIdx.x;
    if (i >= stop) return m;
    Walk walk;
    walk.begin(i, p.minors, threads, base_x, 0, p.sx, p.sy, VEC, LINEAR);
    // full batches: U items in flight
    for (; i + (U - 1) * threads < stop; i += U * threads) {
        Item<T, VEC> item[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            item[u].bits = *reinterpret_cast<const R*>(x + walk.ox);
            walk.template advance<false>();
        }
        A v[U * VEC];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int k = 0; k < VEC; ++k) v[u * VEC + k] = (A)widen(item[u].v[k]);
        m = merge(m, batch<A, U * VEC>(v, U * VEC));
    }
    // the rest: one item a batch
    for (; i < stop; i += threads) {
        Item<T, VEC> item;
        item.bits = *reinterpret_cast<const R*>(x + walk.ox);
        walk.template advance<false>();
        A v[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) v[k] = (A)widen(item.v[k]);
        m = merge(m, batch<A, VEC>(v, VEC));
    }
    return m;
}

// (x - mean) * scale + shift on one item, in Acc, rounded once. `channel`: the item's first
// channel within the group.
template <typename T, typename P, int VEC, bool INNER, bool TABLE>
__device__ __forceinline__ void apply(Item<T, VEC>& item, const P* __restrict__ w, const P* __restrict__ b,
                                      long long c0, int channel, typename Acc<T>::type mean,
                                      typename Acc<T>::type rstd, const typename Acc<T>::type* table) {
    typedef typename Acc<T>::type A;
    enum { C = INNER ? VEC : 1 };  // channels in the item
    A scale[C], shift[C];
#pragma unroll
    for (int k = 0; k < C; ++k) {
        const int c = channel + k;
        if (TABLE) { scale[k] = table[2 * c]; shift[k] = table[2 * c + 1]; }
        else { scale[k] = rstd * (A)widen(w[c0 + c]); shift[k] = (A)widen(b[c0 + c]); }
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
        const int j = INNER ? k : 0;
        item.v[k] = narrow<T>(((A)widen(item.v[k]) - mean) * scale[j] + shift[j]);
    }
}

// y for items [start, stop) of the group whose first channel is c0: (x - mean) * scale + shift
// per channel, scale = rstd * w, shift = b; from the shared-memory table (index: channel within
// the group) when TABLE, else from w and b. INNER: channels along the minor axis (an item's
// VEC elements are VEC channels), else along the major axis (one channel per item).
template <typename T, typename P, int VEC, bool INNER, bool TABLE>
__device__ void normalize(const T* __restrict__ x, const P* __restrict__ w, const P* __restrict__ b, T* __restrict__ y,
                          const Problem& p, long long base_x, long long base_y, long long c0, long long start,
                          long long stop, typename Acc<T>::type mean, typename Acc<T>::type rstd,
                          const typename Acc<T>::type* table) {
    typedef typename Acc<T>::type A;
    typedef typename Raw<sizeof(T) * VEC>::type R;
    enum { U = Unroll<VEC>::value };
    const long long threads = blockDim.x;
    long long i = start + threadIdx.x;
    if (i >= stop) return;
    Walk walk;
    walk.begin(i, p.minors, threads, base_x, base_y, p.sx, p.sy, VEC, false);
    // full batches: U items in flight, no per-item bound check; then one item at a time
    for (; i + (U - 1) * threads < stop; i += U * threads) {
        Item<T, VEC> item[U];
        long long oy[U];
        int channel[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            item[u].bits = *reinterpret_cast<const R*>(x + walk.ox);
            oy[u] = walk.oy;
            channel[u] = INNER ? walk.minor * VEC : walk.major;  // within the group
            walk.template advance<true>();
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            apply<T, P, VEC, INNER, TABLE>(item[u], w, b, c0, channel[u], mean, rstd, table);
            __stcs(reinterpret_cast<R*>(y + oy[u]), item[u].bits);
        }
    }
    for (; i < stop; i += threads) {
        Item<T, VEC> item;
        item.bits = *reinterpret_cast<const R*>(x + walk.ox);
        const long long oy = walk.oy;
        const int channel = INNER ? walk.minor * VEC : walk.major;
        walk.template advance<true>();
        apply<T, P, VEC, INNER, TABLE>(item, w, b, c0, channel, mean, rstd, table);
        __stcs(reinterpret_cast<R*>(y + oy), item.bits);
    }
}

// The per-channel (rstd * w, b) of a group in shared memory, when its cpg channels fit.
template <typename P, typename A>
__device__ const A* stage_table(A* table, const P* __restrict__ w, const P* __restrict__ b, long long c0,
                                long long cpg, A rstd) {
    if (cpg * 2 * (long long)sizeof(A) > GN_TABLE_BYTES) return nullptr;
    for (long long c = threadIdx.x; c < cpg; c += blockDim.x) {
        table[2 * c] = rstd * (A)widen(w[c0 + c]);
        table[2 * c + 1] = (A)widen(b[c0 + c]);
    }
    __syncthreads();
    return table;
}

// A load that sees other blocks' atomics and orders what follows (never hoisted, never from L1).
__device__ __forceinline__ int load_acquire(const int* p) {
    int value;
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(value) : "l"(p) : "memory");
    return value;
}

}  // namespace gn

// The whole forward. Workspace (per stream, zero between calls): queue (1 x u64), tickets
// (groups_total ints), partial (groups_total * chunks * 3 Acc), stats (groups_total * 2 Acc).
// chunks == 1: fused items; else items in waves of `wave` groups, chunk = items per chunk.
template <typename T, typename P, int VEC>
__global__ void __launch_bounds__(256) gn_forward(
        const T* __restrict__ x, const P* __restrict__ w, const P* __restrict__ b, T* __restrict__ y,
        unsigned long long* queue, int* tickets, typename gn::Acc<T>::type* partial, typename gn::Acc<T>::type* stats,
        long long groups, long long cpg, long long positions, long long majors, long long minors, int inner, int linear,
        long long sxn, long long sxmajor, long long sxminor, long long syn, long long symajor, long long syminor,
        long long groups_total, long long chunks, long long chunk, long long wave, double eps) {
    typedef typename gn::Acc<T>::type A;
    __shared__ gn::Moments<A> warps[33];
    __shared__ A table_storage[GN_TABLE_BYTES / sizeof(A)];
    __shared__ unsigned long long claimed;
    __shared__ int flag;
    __shared__ A group_stats[2];
    gn::Problem p;
    p.groups = groups; p.cpg = cpg; p.positions = positions; p.majors = majors; p.minors = minors; p.inner = inner;
    p.sx.n = sxn; p.sx.major = sxmajor; p.sx.minor = sxminor;
    p.sy.n = syn; p.sy.major = symajor; p.sy.minor = syminor;
    p.items = majors * minors;
    p.linear = linear;
    const bool fused = chunks == 1;
    const unsigned long long total = fused ? groups_total : 2ull * groups_total * chunks;
    const long long per_wave = 2 * wave * chunks;
    for (;;) {
        if (threadIdx.x == 0) claimed = atomicAdd(queue, 1ull);
        __syncthreads();
        const unsigned long long index = claimed;
        __syncthreads();
        if (index >= total) {
            if (threadIdx.x == 0 && index == total + gridDim.x - 1) *queue = 0ull;  // the last claim: reset
            return;
        }
        long long group, k;
        bool stats_item = true, normalize_item = true;
        if (fused) {
            group = index; k = 0;
        } else {  // backends/_launch.py `decode`
            const long long wave_index = index / per_wave, first = wave_index * wave;
            const long long in_wave = min(wave, groups_total - first) * chunks;
            long long r = index - wave_index * per_wave;
            stats_item = r < in_wave;
            normalize_item = !stats_item;
            if (normalize_item) r -= in_wave;
            group = first + r / chunks; k = r % chunks;
        }
        const long long n = group / groups, c0 = (group % groups) * cpg;
        const long long base_x = n * sxn + c0 * (inner ? sxminor : sxmajor);  // the group's first element
        const long long base_y = n * syn + c0 * (inner ? syminor : symajor);
        const long long start = fused ? 0 : k * chunk, stop = fused ? p.items : min(start + chunk, p.items);
        A mean = A(0), rstd = A(0);
        if (stats_item) {
            gn::Moments<A> m = linear ? gn::thread_moments<T, VEC, true>(x, p, base_x, start, stop)
                                      : gn::thread_moments<T, VEC, false>(x, p, base_x, start, stop);
            m = gn::block_merge(m, warps);
            if (fused) {
                mean = m.mean;
                rstd = A(1) / sqrt(m.m2 / m.count + A(eps));
            } else {
                if (threadIdx.x == 0) {
                    A* slot = partial + 3 * (group * chunks + k);
                    slot[0] = m.count; slot[1] = m.mean; slot[2] = m.m2;
                    __threadfence();
                    flag = atomicAdd(tickets + group, 1) == chunks - 1;
                }
                __syncthreads();
                if (flag && threadIdx.x < 32) {  // the last chunk's block merges the group's partials
                    __threadfence();
                    const int lane = threadIdx.x;
                    gn::Moments<A> g = {A(0), A(0), A(0)};
                    for (long long j = lane; j < chunks; j += 32) {
                        const A* slot = partial + 3 * (group * chunks + j);
                        gn::Moments<A> part = {__ldcg(slot), __ldcg(slot + 1), __ldcg(slot + 2)};
                        g = gn::merge(g, part);
                    }
                    g = gn::warp_merge(g);
                    if (lane == 0) {
                        stats[2 * group] = g.mean;
                        stats[2 * group + 1] = A(1) / sqrt(g.m2 / g.count + A(eps));
                        __threadfence();
                        atomicAdd(tickets + group, 1);  // K + 1: published
                    }
                }
                __syncthreads();
            }
        }
        if (normalize_item) {
            if (!fused) {  // wait until the group's statistics are published
                if (threadIdx.x == 0) {
                    const int published = (int)chunks + 1;
                    while (gn::load_acquire(tickets + group) < published) __nanosleep(64);
                    group_stats[0] = __ldcg(stats + 2 * group);
                    group_stats[1] = __ldcg(stats + 2 * group + 1);
                    if (atomicAdd(tickets + group, 1) == 2 * (int)chunks) tickets[group] = 0;  // the last reader resets
                }
                __syncthreads();
                mean = group_stats[0]; rstd = group_stats[1];
            }
            const A* table = gn::stage_table(table_storage, w, b, c0, cpg, rstd);
            if (table) {
                if (inner) gn::normalize<T, P, VEC, true, true>(x, w, b, y, p, base_x, base_y, c0, start, stop, mean, rstd, table);
                else gn::normalize<T, P, VEC, false, true>(x, w, b, y, p, base_x, base_y, c0, start, stop, mean, rstd, table);
            } else {
                if (inner) gn::normalize<T, P, VEC, true, false>(x, w, b, y, p, base_x, base_y, c0, start, stop, mean, rstd, table);
                else gn::normalize<T, P, VEC, false, false>(x, w, b, y, p, base_x, base_y, c0, start, stop, mean, rstd, table);
            }
            __syncthreads();  // the table and group_stats are reused by the next item
        }
    }
}
