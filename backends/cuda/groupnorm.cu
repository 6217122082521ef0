// GroupNorm kernels for the `cupy` backend (loaded with cupy.RawModule; see
// backends/cupy_backend.py for the host side and backends/_cuda_model.py for the NumPy
// model of the same block decomposition, which the tests verify on the CPU).
//
// Semantics are torch's: x viewed as (N, C, S), groups of cpg = C / G channels, biased
// variance, eps inside the square root, per-channel affine. Statistics in float for
// half, bfloat16 and float inputs, in double for double (Acc<T>).
//
// Addressing: x and y are read/written through element strides (n, c, s) over the
// (N, C, S) view, 64-bit everywhere. Group element e is (channel e / S, position e % S),
// or (channel e % cpg, position e / cpg) when `inner` (channels-last: the channel stride
// is the smaller one), so consecutive threads touch consecutive addresses in both.
// VEC > 1 (128-bit loads/stores) is used only for a group contiguous in memory in both
// x and y, 16-byte aligned, with S a multiple of VEC (a vector never straddles channels).
//
// Work split (host: backends/_launch.py `plan`):
//   gn_fused            one block per (sample, group): Welford, block merge, then
//                       normalize + affine; the second read of the group hits L2.
//   gn_partial          block = (group, chunk): (count, mean, M2) of a chunk.
//   gn_normalize_split  block = (group, chunk): merges the group's partials in chunk
//                       order (every block the same order), normalizes its chunk.
// Split launches come per wave of groups whose bytes fit in half the L2.
//
// Merges: per thread Welford; warp: Chan merges by __shfl_down_sync with offsets 16, 8,
// 4, 2, 1; block: warp results through shared memory, merged by warp 0 the same way.
// NaN/Inf propagate through mean and M2; a constant group has M2 == 0 exactly.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

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

template <typename A> struct Moments { A count, mean, m2; };

template <typename A> __device__ __forceinline__ void add(Moments<A>& m, A value) {
    m.count += A(1);
    A delta = value - m.mean;
    m.mean += delta / m.count;
    m.m2 += delta * (value - m.mean);
}

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
template <typename A> __device__ Moments<A> block_merge(Moments<A> m) {
    __shared__ Moments<A> warps[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    m = warp_merge(m);
    if (lane == 0) warps[warp] = m;
    __syncthreads();
    if (warp == 0) {
        Moments<A> zero = {A(0), A(0), A(0)};
        m = warp_merge(lane < nwarps ? warps[lane] : zero);
        if (lane == 0) warps[0] = m;
    }
    __syncthreads();
    return warps[0];
}

struct Layout { long long n, c, s; };

// Address of group element e and its channel.
__device__ __forceinline__ long long address(long long e, long long n, long long c0, long long cpg,
                                             long long positions, Layout l, bool inner, long long& c) {
    long long s;
    if (inner) { c = c0 + e % cpg; s = e / cpg; }
    else { c = c0 + e / positions; s = e % positions; }
    return n * l.n + c * l.c + s * l.s;
}

template <typename T, int VEC> union Vector {
    uint4 bits;
    T v[VEC];
};

// Welford over items [start, stop) of the group, step blockDim.x; an item is VEC elements.
template <typename T, int VEC>
__device__ Moments<typename Acc<T>::type> thread_moments(const T* __restrict__ x, long long n, long long c0,
        long long cpg, long long positions, Layout lx, bool inner, long long start, long long stop) {
    typedef typename Acc<T>::type A;
    Moments<A> m = {A(0), A(0), A(0)};
    if (VEC == 1) {
        for (long long e = start; e < stop; e += blockDim.x) {
            long long c;
            add(m, (A)widen(x[address(e, n, c0, cpg, positions, lx, inner, c)]));
        }
    } else {
        const T* base = x + n * lx.n + c0 * lx.c;  // contiguous group
        for (long long i = start; i < stop; i += blockDim.x) {
            Vector<T, VEC> item;
            item.bits = reinterpret_cast<const uint4*>(base)[i];
#pragma unroll
            for (int k = 0; k < VEC; ++k) add(m, (A)widen(item.v[k]));
        }
    }
    return m;
}

template <typename T, typename P, int VEC>
__device__ void normalize_items(const T* __restrict__ x, const P* __restrict__ w, const P* __restrict__ b,
        T* __restrict__ y, long long n, long long c0, long long cpg, long long positions, Layout lx, Layout ly,
        bool inner, long long start, long long stop, typename Acc<T>::type mean, typename Acc<T>::type rstd) {
    typedef typename Acc<T>::type A;
    if (VEC == 1) {
        for (long long e = start; e < stop; e += blockDim.x) {
            long long c;
            long long i = address(e, n, c0, cpg, positions, lx, inner, c);
            long long o = address(e, n, c0, cpg, positions, ly, inner, c);
            A scale = rstd * (A)widen(w[c]);
            y[o] = narrow<T>(((A)widen(x[i]) - mean) * scale + (A)widen(b[c]));
        }
    } else {
        const T* xbase = x + n * lx.n + c0 * lx.c;
        T* ybase = y + n * ly.n + c0 * ly.c;
        for (long long i = start; i < stop; i += blockDim.x) {
            long long c = c0 + (i * VEC) / positions;
            A scale = rstd * (A)widen(w[c]);
            A shift = (A)widen(b[c]);
            Vector<T, VEC> item;
            item.bits = reinterpret_cast<const uint4*>(xbase)[i];
#pragma unroll
            for (int k = 0; k < VEC; ++k) item.v[k] = narrow<T>(((A)widen(item.v[k]) - mean) * scale + shift);
            reinterpret_cast<uint4*>(ybase)[i] = item.bits;
        }
    }
}

}  // namespace gn

// One block per (sample, group). `items` = group size / VEC.
template <typename T, typename P, int VEC>
__global__ void gn_fused(const T* __restrict__ x, const P* __restrict__ w, const P* __restrict__ b,
        T* __restrict__ y, long long groups, long long cpg, long long positions,
        long long sxn, long long sxc, long long sxs, long long syn, long long syc, long long sys,
        int inner, double eps) {
    typedef typename gn::Acc<T>::type A;
    const gn::Layout lx = {sxn, sxc, sxs}, ly = {syn, syc, sys};
    const long long block = blockIdx.x, n = block / groups, c0 = (block % groups) * cpg;
    const long long items = cpg * positions / VEC;
    gn::Moments<A> m = gn::thread_moments<T, VEC>(x, n, c0, cpg, positions, lx, inner, threadIdx.x, items);
    m = gn::block_merge(m);
    const A rstd = A(1) / sqrt(m.m2 / m.count + A(eps));
    gn::normalize_items<T, P, VEC>(x, w, b, y, n, c0, cpg, positions, lx, ly, inner, threadIdx.x, items,
                                   m.mean, rstd);
}

// Block (group - first) * chunks + k: the moments of chunk k (`chunk` items) of its group.
template <typename T, int VEC>
__global__ void gn_partial(const T* __restrict__ x, typename gn::Acc<T>::type* __restrict__ partial,
        long long first, long long groups, long long cpg, long long positions, long long chunks, long long chunk,
        long long sxn, long long sxc, long long sxs, int inner) {
    typedef typename gn::Acc<T>::type A;
    const gn::Layout lx = {sxn, sxc, sxs};
    const long long block = blockIdx.x, group = first + block / chunks, k = block % chunks;
    const long long items = cpg * positions / VEC;
    const long long start = k * chunk, stop = min(start + chunk, items);
    gn::Moments<A> m = gn::thread_moments<T, VEC>(x, group / groups, (group % groups) * cpg, cpg, positions, lx,
                                                  inner, start + threadIdx.x, stop);
    m = gn::block_merge(m);
    if (threadIdx.x == 0) {
        partial[3 * block] = m.count;
        partial[3 * block + 1] = m.mean;
        partial[3 * block + 2] = m.m2;
    }
}

template <typename T, typename P, int VEC>
__global__ void gn_normalize_split(const T* __restrict__ x, const P* __restrict__ w, const P* __restrict__ b,
        T* __restrict__ y, const typename gn::Acc<T>::type* __restrict__ partial, long long first, long long groups,
        long long cpg, long long positions, long long chunks, long long chunk,
        long long sxn, long long sxc, long long sxs, long long syn, long long syc, long long sys,
        int inner, double eps) {
    typedef typename gn::Acc<T>::type A;
    __shared__ A stats[2];
    const gn::Layout lx = {sxn, sxc, sxs}, ly = {syn, syc, sys};
    const long long block = blockIdx.x, group = first + block / chunks, k = block % chunks;
    if (threadIdx.x == 0) {
        const long long base = (block / chunks) * chunks;
        gn::Moments<A> m = {A(0), A(0), A(0)};
        for (long long j = 0; j < chunks; ++j) {
            gn::Moments<A> part = {partial[3 * (base + j)], partial[3 * (base + j) + 1], partial[3 * (base + j) + 2]};
            m = gn::merge(m, part);
        }
        stats[0] = m.mean;
        stats[1] = A(1) / sqrt(m.m2 / m.count + A(eps));
    }
    __syncthreads();
    const long long items = cpg * positions / VEC;
    const long long start = k * chunk, stop = min(start + chunk, items);
    gn::normalize_items<T, P, VEC>(x, w, b, y, group / groups, (group % groups) * cpg, cpg, positions, lx, ly, inner,
                                   start + threadIdx.x, stop, stats[0], stats[1]);
}
