// stockmixer/kernels/gelu.hpp — GELU, the exact erf form, as torch.nn.GELU() (approximate='none').
//
//   forward   y = x · Φ(x),  Φ(x) = (1 + erf(x / √2)) / 2
//   backward  dx += dy · (Φ(x) + x · φ(x)),  φ(x) = exp(-x² / 2) / √(2π)
//   saves     nothing: backward reads the forward input x.
//
// Elementwise on n values; threads by fixed chunks. float: SIMD packets with Eigen's erf and exp (below).
// Derivation: docs/math/gelu.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

#include <unsupported/Eigen/SpecialFunctions>

#include <cmath>
#include <type_traits>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void gelu_forward(T* y, const T* x, Index n);
template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, Index n);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
constexpr double kSqrtHalf = 0.70710678118654752440;       // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;     // 1/√(2π)

// float runs on whole SIMD packets with Eigen's vectorised erf (a 13/8-degree rational approximation,
// "a couple of ulp" on [-4, 4], ±1 outside) and exp. The tail goes through one zero-padded packet, so
// every value takes the same instructions wherever it sits (results do not depend on the chunking, the
// thread count or the buffer's alignment). double stays on std::erf / std::exp: it is the reference
// precision of the gradient checks.
template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T>
constexpr Index kPacketSize = Eigen::internal::unpacket_traits<Packet<T>>::size;

// Φ(x) = (1 + erf(x/√2)) / 2 on one packet
inline Packet<float> gelu_cdf_packet(const Packet<float>& x) {
  using namespace Eigen::internal;
  using P = Packet<float>;
  const P half = pset1<P>(0.5f);
  return pmul(half, padd(pset1<P>(1.0f), perf(pmul(x, pset1<P>(static_cast<float>(kSqrtHalf))))));
}

// Applies out = f(packets of in...) to n values: whole packets, then the tail through padded packets.
template <class F, class... In>
void for_each_packet(Index n, float* out, F&& f, const In*... in) {
  using namespace Eigen::internal;
  constexpr Index P = kPacketSize<float>;
  Index i = 0;
  for (; i + P <= n; i += P) pstoreu(out + i, f(ploadu<Packet<float>>(in + i)...));
  if (i < n) {
    alignas(64) float pad_out[P];
    auto load_tail = [&](const float* src) {
      alignas(64) float pad[P] = {};
      for (Index k = 0; k < n - i; ++k) pad[k] = src[i + k];
      return pload<Packet<float>>(pad);
    };
    pstore(pad_out, f(load_tail(in)...));
    for (Index k = 0; k < n - i; ++k) out[i + k] = pad_out[k];
  }
}
}  // namespace detail

template <class T>
void gelu_forward(T* y, const T* x, Index n) {
  parallel_for(n, 8192, [&](Index i0, Index i1) {
    if constexpr (std::is_same_v<T, float>) {
      using namespace Eigen::internal;
      detail::for_each_packet(i1 - i0, y + i0, [](const detail::Packet<float>& xv) {
        return pmul(xv, detail::gelu_cdf_packet(xv));
      }, x + i0);
    } else {
      for (Index i = i0; i < i1; ++i)
        y[i] = x[i] * T(0.5) * (T(1) + std::erf(x[i] * static_cast<T>(detail::kSqrtHalf)));
    }
  });
}

template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, Index n) {
  parallel_for(n, 8192, [&](Index i0, Index i1) {
    if constexpr (std::is_same_v<T, float>) {
      using namespace Eigen::internal;
      using P = detail::Packet<float>;
      const P minus_half = pset1<P>(-0.5f), inv_sqrt_2pi = pset1<P>(static_cast<float>(detail::kInvSqrt2Pi));
      // dx + dy · (Φ(x) + x · φ(x))
      detail::for_each_packet(i1 - i0, dx + i0, [&](const P& dxv, const P& dyv, const P& xv) {
        const P pdf = pmul(pexp(pmul(minus_half, pmul(xv, xv))), inv_sqrt_2pi);
        return padd(dxv, pmul(dyv, padd(detail::gelu_cdf_packet(xv), pmul(xv, pdf))));
      }, dx + i0, dy + i0, x + i0);
    } else {
      for (Index i = i0; i < i1; ++i) {
        const T cdf = T(0.5) * (T(1) + std::erf(x[i] * static_cast<T>(detail::kSqrtHalf)));
        const T pdf = std::exp(T(-0.5) * x[i] * x[i]) * static_cast<T>(detail::kInvSqrt2Pi);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
      }
    }
  });
}

}  // namespace stockmixer
