// stockmixer/autograd/ops.hpp — the ops of StockMixer on the tape: each checks its shapes, runs a
// kernel's forward into a new node, and records the kernel's backward. Nothing else happens here:
// the math lives in kernels/, documented in docs/math/.
//
// Layout choices that remove the original's permutes (docs/model.md): features stay [N, L, C]; the
// time mixer TriU runs on axis 1 of [N, L, C] (kernels/triu.hpp with K = C) and Conv1d reads the
// channels-last layout directly. Op by op, the stock mixer's two transposes of [N, F] remain; the fused
// ops pass y as [F, N] and need none.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "stockmixer/autograd/tape.hpp"
#include "stockmixer/kernels.hpp"

namespace stockmixer::autograd {

// ---- interface -------------------------------------------------------------------------------------

// y[..., out] = x[..., in] · W^T + b, W [out, in], b [out] (or null).
template <class T>
Node<T>* linear(Tape<T>& tape, Node<T>* x, Node<T>* weight, Node<T>* bias);
// LayerNorm over the trailing gamma->size() values of x (gamma, beta shaped like those dims).
template <class T>
Node<T>* layernorm(Tape<T>& tape, Node<T>* x, Node<T>* gamma, Node<T>* beta, double eps = 1e-5);
template <class T>
Node<T>* gelu(Tape<T>& tape, Node<T>* x);
template <class T>
Node<T>* hardswish(Tape<T>& tape, Node<T>* x);
// x [B, L, Ci] channels-last, weight [Co, Ci, K], stride K -> [B, L/K, Co].
template <class T>
Node<T>* conv1d(Tape<T>& tape, Node<T>* x, Node<T>* weight, Node<T>* bias);
// TriU on axis 1 of x [B, L, K] (or the last axis of x [B, L]); weight [L, L] lower triangle, bias [L].
template <class T>
Node<T>* triu(Tape<T>& tape, Node<T>* x, Node<T>* weight, Node<T>* bias);
// Inverted dropout with a fresh mask from `seed`; the identity when p == 0 or the tape does not record.
template <class T>
Node<T>* dropout(Tape<T>& tape, Node<T>* x, double p, std::uint64_t seed);
template <class T>
Node<T>* add(Tape<T>& tape, Node<T>* a, Node<T>* b);
// Concatenation along axis 1 of rank-3 nodes [B, L_k, C] -> [B, Σ L_k, C] (at most 4 parts).
template <class T>
Node<T>* concat1(Tape<T>& tape, std::initializer_list<Node<T>*> parts);
// [R, C] -> [C, R].
template <class T>
Node<T>* transpose(Tape<T>& tape, Node<T>* x);
// [B, R, C] -> [B, C, R] (PyTorch's permute(0, 2, 1)).
template <class T>
Node<T>* swap12(Tape<T>& tape, Node<T>* x);
// The same values under another shape of the same size; shares value and gradient memory (free).
template <class T>
Node<T>* view(Tape<T>& tape, Node<T>* x, Shape shape);

// Everything StockMixer does to each stock before the stock mixer, as one fused op
// (kernels/per_stock.hpp): x [N, T, C] -> y transposed, [F, N]. The weights are the modules' parameters; `params`
// must outlive the backward (the model keeps it).
template <class T>
struct PerStockParams {
  PerStockWeights<const T*> value;
  PerStockWeights<T*> grad;
};
template <class T>
Node<T>* per_stock(Tape<T>& tape, Node<T>* x, const PerStockParams<T>& params);

// Everything StockMixer does after the per-stock part, as one fused op (kernels/stock_head.hpp): the
// stock mixer NoGraphMixer(N, M) and both heads, y transposed [F, N] -> out [N, 1]. `params` must outlive the
// backward (the model keeps it).
template <class T>
struct StockHeadParams {
  StockHeadWeights<const T*> value;
  StockHeadWeights<T*> grad;
  Index stocks = 0, market = 0;  // N, M: the sizes the weights were made for
};
template <class T>
Node<T>* stock_head(Tape<T>& tape, Node<T>* y, const StockHeadParams<T>& params);

// get_loss: pred, base, gt, mask [N, 1] (or [N]). Returns the loss node (one value) and, as plain
// numbers, reg and rank; rr (a node, no gradient) holds the predicted return ratios. Runs the exact
// O(N log N) form of the rank term (kernels/rank_loss.hpp, rank_loss_forward_sorted); masks must be 0
// or 1 (anything else is an Error).
template <class T>
struct LossOutput {
  Node<T>* loss;
  Node<T>* rr;
  T reg, rank;
};
template <class T>
LossOutput<T> rank_loss(Tape<T>& tape, Node<T>* pred, Node<T>* base, Node<T>* gt, Node<T>* mask, T alpha);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

// Throws unless ok; the message is built only on failure (the checks run on every call of the
// inference path, which must not allocate).
template <class Message>
void expect(bool ok, const char* op, Message&& message) {
  if (!ok) throw Error(std::string("stockmixer::autograd::") + op + ": " + std::string(message()));
}

// A node holding `count` doubles in the bytes of T values (the tape's storage is 64-byte aligned): the
// state a fused op keeps in double between its forward and backward, whatever T is.
template <class T>
Node<T>* double_node(Tape<T>& tape, Index count) {
  constexpr Index kPerDouble = static_cast<Index>(sizeof(double) / sizeof(T));
  return tape.node({std::max<Index>(count, 1) * kPerDouble}, false);
}
template <class T>
double* doubles(Node<T>* n) {
  return reinterpret_cast<double*>(n->data());
}

template <class T>
T* grad_or_null(Node<T>* n) {
  return n && n->requires_grad() ? n->grad.data() : nullptr;
}

template <class T>
bool any_grad(std::initializer_list<Node<T>*> nodes) {
  for (Node<T>* n : nodes)
    if (n && n->requires_grad()) return true;
  return false;
}

// Scratch memory of the O(N log N) rank loss, one per thread. It holds nothing between calls (the
// backward recomputes what it needs from rr, gt and mask), so sharing it is safe; it grows to the
// largest N seen and then never allocates again.
inline RankLossWorkspace& rank_loss_scratch() {
  static thread_local RankLossWorkspace ws;
  return ws;
}

// The shape of x with its last axis replaced by `last`.
inline Shape with_last(const Shape& s, Index last) {
  std::array<Index, Shape::kMaxRank> d{};
  for (int a = 0; a + 1 < s.rank(); ++a) d[static_cast<std::size_t>(a)] = s[a];
  d[static_cast<std::size_t>(std::max(s.rank(), 1) - 1)] = last;
  return Shape(d.begin(), d.begin() + std::max(s.rank(), 1));
}

}  // namespace detail

template <class T>
Node<T>* linear(Tape<T>& tape, Node<T>* x, Node<T>* weight, Node<T>* bias) {
  const Index out = weight->shape()[0], in = weight->shape().rank() == 2 ? weight->shape()[1] : -1;
  detail::expect(weight->shape().rank() == 2, "linear",
                 [&] { return "weight must be [out, in], got " + weight->shape().str(); });
  detail::expect(x->shape().rank() >= 1 && x->shape().last() == in, "linear",
                 [&] { return "input " + x->shape().str() + " does not end in " + std::to_string(in); });
  detail::expect(!bias || bias->size() == out, "linear",
                 [&] { return "bias must have " + std::to_string(out) + " values"; });
  const Index rows = x->size() / in;
  Node<T>* y = tape.node(detail::with_last(x->shape(), out), detail::any_grad<T>({x, weight, bias}));
  linear_forward(y->data(), x->data(), weight->data(), bias ? bias->data() : nullptr, rows, in, out);
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   linear_backward(detail::grad_or_null(r.nodes[0]), detail::grad_or_null(r.nodes[1]),
                                   detail::grad_or_null(r.nodes[2]), r.nodes[3]->grad.data(), r.nodes[0]->data(),
                                   r.nodes[1]->data(), r.sizes[0], r.sizes[1], r.sizes[2]);
                 },
                 {x, weight, bias, y},
                 {rows, in, out}});
  return y;
}

template <class T>
Node<T>* layernorm(Tape<T>& tape, Node<T>* x, Node<T>* gamma, Node<T>* beta, double eps) {
  const Index dim = gamma->size();
  detail::expect(beta->size() == dim, "layernorm", [&] { return "gamma and beta differ in size"; });
  detail::expect(dim > 0 && x->size() % dim == 0, "layernorm", [&] {
    return "input " + x->shape().str() + " does not end in the normalised shape " + gamma->shape().str();
  });
  const Index rows = x->size() / dim;
  Node<T>* y = tape.node(x->shape(), detail::any_grad<T>({x, gamma, beta}));
  Node<T>* stats = tape.node({2, rows}, false);  // mean, rstd: what backward needs
  layernorm_forward(y->data(), stats->data(), stats->data() + rows, x->data(), gamma->data(), beta->data(), rows, dim,
                    eps);
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   const Index rows = r.sizes[0];
                   layernorm_backward(detail::grad_or_null(r.nodes[0]), detail::grad_or_null(r.nodes[1]),
                                      detail::grad_or_null(r.nodes[2]), r.nodes[3]->grad.data(), r.nodes[0]->data(),
                                      r.nodes[4]->data(), r.nodes[4]->data() + rows, r.nodes[1]->data(), rows,
                                      r.sizes[1]);
                 },
                 {x, gamma, beta, y, stats},
                 {rows, dim}});
  return y;
}

template <class T>
Node<T>* gelu(Tape<T>& tape, Node<T>* x) {
  Node<T>* y = tape.node(x->shape(), x->requires_grad());
  gelu_forward(y->data(), x->data(), x->size());
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   gelu_backward(r.nodes[0]->grad.data(), r.nodes[1]->grad.data(), r.nodes[0]->data(),
                                 r.nodes[0]->size());
                 },
                 {x, y}});
  return y;
}

template <class T>
Node<T>* hardswish(Tape<T>& tape, Node<T>* x) {
  Node<T>* y = tape.node(x->shape(), x->requires_grad());
  hardswish_forward(y->data(), x->data(), x->size());
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   hardswish_backward(r.nodes[0]->grad.data(), r.nodes[1]->grad.data(), r.nodes[0]->data(),
                                      r.nodes[0]->size());
                 },
                 {x, y}});
  return y;
}

template <class T>
Node<T>* conv1d(Tape<T>& tape, Node<T>* x, Node<T>* weight, Node<T>* bias) {
  detail::expect(x->shape().rank() == 3, "conv1d", [&] { return "input must be [B, L, C], got " + x->shape().str(); });
  detail::expect(weight->shape().rank() == 3, "conv1d",
                 [&] { return "weight must be [Co, Ci, K], got " + weight->shape().str(); });
  const Index batch = x->shape()[0], length = x->shape()[1], cin = x->shape()[2];
  const Index cout = weight->shape()[0], kernel = weight->shape()[2];
  detail::expect(weight->shape()[1] == cin, "conv1d", [&] {
    return "weight " + weight->shape().str() + " does not take " + std::to_string(cin) + " input channels";
  });
  detail::expect(kernel >= 1 && length >= kernel, "conv1d", [&] {
    return "length " + std::to_string(length) + " is shorter than the kernel " + std::to_string(kernel);
  });
  detail::expect(!bias || bias->size() == cout, "conv1d",
                 [&] { return "bias must have " + std::to_string(cout) + " values"; });
  const Index lo = conv1d_output_length(length, kernel);
  Node<T>* y = tape.node({batch, lo, cout}, detail::any_grad<T>({x, weight, bias}));
  conv1d_forward(y->data(), x->data(), weight->data(), bias ? bias->data() : nullptr, batch, length, cin, cout, kernel);
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   conv1d_backward(detail::grad_or_null(r.nodes[0]), detail::grad_or_null(r.nodes[1]),
                                   detail::grad_or_null(r.nodes[2]), r.nodes[3]->grad.data(), r.nodes[0]->data(),
                                   r.nodes[1]->data(), r.sizes[0], r.sizes[1], r.sizes[2], r.sizes[3], r.sizes[4]);
                 },
                 {x, weight, bias, y},
                 {batch, length, cin, cout, kernel}});
  return y;
}

template <class T>
Node<T>* triu(Tape<T>& tape, Node<T>* x, Node<T>* weight, Node<T>* bias) {
  const Index length = weight->shape()[0];
  detail::expect(weight->shape() == Shape({length, length}), "triu",
                 [&] { return "weight must be square, got " + weight->shape().str(); });
  detail::expect((x->shape().rank() == 3 || x->shape().rank() == 2) && x->shape()[1] == length, "triu", [&] {
    return "input " + x->shape().str() + " does not have " + std::to_string(length) + " steps on axis 1";
  });
  detail::expect(!bias || bias->size() == length, "triu",
                 [&] { return "bias must have " + std::to_string(length) + " values"; });
  const Index batch = x->shape()[0], inner = x->shape().rank() == 3 ? x->shape()[2] : 1;
  Node<T>* y = tape.node(x->shape(), detail::any_grad<T>({x, weight, bias}));
  triu_forward(y->data(), x->data(), weight->data(), bias ? bias->data() : nullptr, batch, length, inner);
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   triu_backward(detail::grad_or_null(r.nodes[0]), detail::grad_or_null(r.nodes[1]),
                                 detail::grad_or_null(r.nodes[2]), r.nodes[3]->grad.data(), r.nodes[0]->data(),
                                 r.nodes[1]->data(), r.sizes[0], r.sizes[1], r.sizes[2]);
                 },
                 {x, weight, bias, y},
                 {batch, length, inner}});
  return y;
}

template <class T>
Node<T>* dropout(Tape<T>& tape, Node<T>* x, double p, std::uint64_t seed) {
  if (p == 0.0 || !tape.recording()) return x;
  Node<T>* mask = tape.node(x->shape(), false);
  dropout_mask(mask->data(), x->size(), p, seed);
  Node<T>* y = tape.node(x->shape(), x->requires_grad());
  dropout_forward(y->data(), x->data(), mask->data(), x->size());
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   dropout_backward(r.nodes[0]->grad.data(), r.nodes[1]->grad.data(), r.nodes[2]->data(),
                                    r.nodes[0]->size());
                 },
                 {x, y, mask}});
  return y;
}

template <class T>
Node<T>* add(Tape<T>& tape, Node<T>* a, Node<T>* b) {
  detail::expect(a->shape() == b->shape(), "add",
                 [&] { return "shapes differ: " + a->shape().str() + " and " + b->shape().str(); });
  Node<T>* y = tape.node(a->shape(), detail::any_grad<T>({a, b}));
  const Index n = a->size();
  for (Index i = 0; i < n; ++i) y->data()[i] = a->data()[i] + b->data()[i];
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   const T* dy = r.nodes[2]->grad.data();
                   for (int k = 0; k < 2; ++k)
                     if (T* d = detail::grad_or_null(r.nodes[k]))
                       for (Index i = 0; i < r.sizes[0]; ++i) d[i] += dy[i];
                 },
                 {a, b, y},
                 {n}});
  return y;
}

template <class T>
Node<T>* concat1(Tape<T>& tape, std::initializer_list<Node<T>*> parts) {
  detail::expect(parts.size() >= 1 && parts.size() <= 4, "concat1", [&] { return "takes 1 to 4 parts"; });
  Node<T>* first = *parts.begin();
  detail::expect(first->shape().rank() == 3, "concat1",
                 [&] { return "parts must be [B, L, C], got " + first->shape().str(); });
  const Index batch = first->shape()[0], channels = first->shape()[2];
  Index total = 0;
  bool grad = false;
  for (Node<T>* p : parts) {
    detail::expect(p->shape().rank() == 3 && p->shape()[0] == batch && p->shape()[2] == channels, "concat1", [&] {
      return "part " + p->shape().str() + " does not match " + first->shape().str() + " outside axis 1";
    });
    total += p->shape()[1];
    grad = grad || p->requires_grad();
  }
  Node<T>* y = tape.node({batch, total, channels}, grad);
  // y[b] is the parts' [L_k, C] blocks one after another: copy each block.
  Index offset = 0;
  for (Node<T>* p : parts) {
    const Index block = p->shape()[1] * channels;
    for (Index b = 0; b < batch; ++b)
      std::copy(p->data() + b * block, p->data() + (b + 1) * block, y->data() + b * total * channels + offset);
    offset += block;
  }
  if (grad) {
    Record<T> r{[](const Record<T>& r) {
                  const Index batch = r.sizes[0], row = r.sizes[1];
                  const T* dy = r.nodes[0]->grad.data();
                  Index offset = 0;
                  for (std::size_t k = 1; k < r.nodes.size() && r.nodes[k]; ++k) {
                    Node<T>* p = r.nodes[k];
                    const Index block = p->size() / batch;
                    if (T* dp = detail::grad_or_null(p))
                      for (Index b = 0; b < batch; ++b)
                        for (Index i = 0; i < block; ++i) dp[b * block + i] += dy[b * row + offset + i];
                    offset += block;
                  }
                },
                {y},
                {batch, total * channels}};
    std::size_t k = 1;
    for (Node<T>* p : parts) r.nodes[k++] = p;
    tape.record(r);
  }
  return y;
}

template <class T>
Node<T>* transpose(Tape<T>& tape, Node<T>* x) {
  detail::expect(x->shape().rank() == 2, "transpose", [&] { return "input must be [R, C], got " + x->shape().str(); });
  Node<T>* y = swap12(tape, view(tape, x, {1, x->shape()[0], x->shape()[1]}));
  return view(tape, y, {x->shape()[1], x->shape()[0]});
}

template <class T>
Node<T>* swap12(Tape<T>& tape, Node<T>* x) {
  detail::expect(x->shape().rank() == 3, "swap12", [&] { return "input must be [B, R, C], got " + x->shape().str(); });
  const Index batch = x->shape()[0], rows = x->shape()[1], cols = x->shape()[2];
  Node<T>* y = tape.node({batch, cols, rows}, x->requires_grad());
  for (Index b = 0; b < batch; ++b)
    MatrixMap<T>(y->data() + b * rows * cols, cols, rows) =
        ConstMatrixMap<T>(x->data() + b * rows * cols, rows, cols).transpose();
  if (y->requires_grad())
    tape.record({[](const Record<T>& r) {
                   const Index batch = r.sizes[0], rows = r.sizes[1], cols = r.sizes[2];
                   for (Index b = 0; b < batch; ++b)
                     MatrixMap<T>(r.nodes[0]->grad.data() + b * rows * cols, rows, cols) +=
                         ConstMatrixMap<T>(r.nodes[1]->grad.data() + b * rows * cols, cols, rows).transpose();
                 },
                 {x, y},
                 {batch, rows, cols}});
  return y;
}

template <class T>
Node<T>* view(Tape<T>& tape, Node<T>* x, Shape shape) {
  detail::expect(shape.size() == x->size(), "view",
                 [&] { return "cannot view " + x->shape().str() + " as " + shape.str(); });
  return tape.wrap(TensorMap<T>(x->data(), shape),
                   x->requires_grad() ? TensorMap<T>(x->grad.data(), shape) : TensorMap<T>());
}

template <class T>
Node<T>* per_stock(Tape<T>& tape, Node<T>* x, const PerStockParams<T>& params) {
  detail::expect(x->shape().rank() == 3 && x->shape()[1] >= 2 && x->shape()[1] % 2 == 0, "per_stock",
                 [&] { return "input must be [N, T, C] with an even T, got " + x->shape().str(); });
  const Index n = x->shape()[0], steps = x->shape()[1], channels = x->shape()[2];
  Node<T>* y = tape.node({2 * steps + steps / 2, n}, true);
  // Training keeps the forward's activations for the backward (2.4 KB a stock at T = 16, C = 5) while
  // they fit in 8 MB, about the caches (N up to about 3 300; the figures below are from when a stock
  // took 3.7 KB and the limit was N of about 2 200): NASDAQ's step 2.38 -> 2.11 ms. Beyond,
  // the backward recomputes them in cache, which measured faster than the round trip through memory
  // (N = 5000: 14.1 ms with an 18 MB stash, 12.2 without; N = 20 000: 59.7 against 55.0 ms, and a
  // 154 MB peak against 79 MB). Measured again once the forward also computed GELU's derivative:
  // always recomputing, NASDAQ 1.47 ms against 1.29-1.32 with the stash; always stashing, N = 5000
  // 9.6-10.5 against 7.2-8.1 ms and N = 20 000 42.2 against 33.9-34.2 ms: the 8 MB limit stays.
  Node<T>* stash = nullptr;
  const Index stash_size = per_stock_stash_size<T>(n, steps, channels);
  if (y->requires_grad() && stash_size * static_cast<Index>(sizeof(T)) <= (Index(8) << 20))
    stash = tape.node({stash_size}, false);
  per_stock_forward(y->data(), x->data(), params.value, n, steps, channels, stash ? stash->data() : nullptr);
  if (y->requires_grad()) {
    Record<T> r{[](const Record<T>& r) {
                  const auto& p = *static_cast<const PerStockParams<T>*>(r.context);
                  per_stock_backward(detail::grad_or_null(r.nodes[0]), p.grad, r.nodes[1]->grad.data(),
                                     r.nodes[0]->data(), p.value, r.sizes[0], r.sizes[1], r.sizes[2],
                                     r.nodes[2] ? r.nodes[2]->data() : nullptr);
                },
                {x, y, stash},
                {n, steps, channels}};
    r.context = &params;
    tape.record(r);
  }
  return y;
}

template <class T>
Node<T>* stock_head(Tape<T>& tape, Node<T>* y, const StockHeadParams<T>& params) {
  detail::expect(y->shape().rank() == 2 && y->shape()[1] == params.stocks, "stock_head", [&] {
    return "input must be [F, N] with N = " + std::to_string(params.stocks) + ", got " + y->shape().str();
  });
  const Index fused = y->shape()[0], n = y->shape()[1], market = params.market;
  Node<T>* out = tape.node({n, 1}, true);
  Node<T>* stash = detail::double_node(tape, stock_head_stash_size(n, fused, market));  // its activations
  stock_head_forward(out->data(), y->data(), params.value, n, fused, market, detail::doubles(stash));
  if (out->requires_grad()) {
    Record<T> r{[](const Record<T>& r) {
                  const auto& p = *static_cast<const StockHeadParams<T>*>(r.context);
                  stock_head_backward(detail::grad_or_null(r.nodes[0]), p.grad, r.nodes[1]->grad.data(), p.value,
                                      r.sizes[0], r.sizes[1], p.market,
                                      detail::doubles(r.nodes[2]));
                },
                {y, out, stash},
                {n, fused}};
    r.context = &params;
    tape.record(r);
  }
  return out;
}

template <class T>
LossOutput<T> rank_loss(Tape<T>& tape, Node<T>* pred, Node<T>* base, Node<T>* gt, Node<T>* mask, T alpha) {
  const Index n = pred->size();
  for (Node<T>* other : {base, gt, mask})
    detail::expect(other->size() == n, "rank_loss", [&] {
      return "prediction " + pred->shape().str() + " and " + other->shape().str() + " differ in size";
    });
  LossOutput<T> out;
  out.rr = tape.node(pred->shape(), false);
  out.loss = tape.node({1}, pred->requires_grad());
  // For a backward, the forward keeps each stock's S_i (n doubles) so that the backward needs no sort:
  // O(N) instead of O(N log N).
  const bool backward = out.loss->requires_grad();
  double* hinge_data = backward ? detail::doubles(detail::double_node(tape, n)) : nullptr;
  const RankLoss<T> l = rank_loss_forward_sorted(out.rr->data(), pred->data(), base->data(), gt->data(),
                                                 mask->data(), n, alpha, detail::rank_loss_scratch(), hinge_data);
  out.loss->data()[0] = l.loss;
  out.reg = l.reg;
  out.rank = l.rank;
  if (backward) {
    Record<T> r{[](const Record<T>& r) {
                  rank_loss_backward_from_hinge(r.nodes[0]->grad.data(), r.nodes[5]->grad.data()[0], r.nodes[4]->data(),
                                                r.nodes[1]->data(), r.nodes[2]->data(), r.nodes[3]->data(), r.sizes[0],
                                                r.scalar, static_cast<const double*>(r.context));
                },
                {pred, base, gt, mask, out.rr, out.loss},
                {n},
                alpha};
    r.context = hinge_data;  // tape memory: valid until the tape is reset
    tape.record(r);
  }
  return out;
}

}  // namespace stockmixer::autograd
