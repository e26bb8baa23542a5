// stockmixer/autograd/ops.hpp — the generic ops on the tape: each checks its shapes, runs a kernel's
// forward into a new node, and records a struct whose backward calls the kernel's backward. The math
// lives in kernels/, documented in docs/math/.
//
// Layout choices that remove the original's permutes (docs/model.md): features stay [N, L, C]; the
// time mixer TriU runs on axis 1 of [N, L, C] (kernels/triu.hpp with K = C) and Conv1d reads the
// channels-last layout directly. The stock mixer's two transposes of [N, F] remain.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

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

// get_loss: pred, base, gt, mask [N, 1] (or [N]). Returns the loss node (one value) and, as plain
// numbers, reg and rank; rr (a node, no gradient) holds the predicted return ratios. Runs the exact
// O(N log N) form of the rank term (kernels/rank_loss.hpp, rank_loss_forward_sorted) in the caller's
// workspace; masks must be 0 or 1 (anything else is an Error).
template <class T>
struct LossOutput {
  Node<T>* loss;
  Node<T>* rr;
  T reg, rank;
};
template <class T>
LossOutput<T> rank_loss(Tape<T>& tape, Node<T>* pred, Node<T>* base, Node<T>* gt, Node<T>* mask, T alpha,
                        RankLossWorkspace& workspace);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

// Throws unless ok; the message is built only on failure (the checks run on every call of the
// inference path, which must not allocate).
template <class Message>
void expect(bool ok, const char* op, Message&& message) {
  if (!ok) throw Error(std::string("stockmixer::autograd::") + op + ": " + std::string(message()));
}

template <class T>
T* grad_or_null(const Node<T>* n) {
  return n && n->requires_grad() ? n->grad.data() : nullptr;
}

template <class T>
bool any_grad(std::initializer_list<Node<T>*> nodes) {
  for (Node<T>* n : nodes)
    if (n && n->requires_grad()) return true;
  return false;
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
  struct Record {
    Node<T>*x, *weight, *bias, *y;
    Index rows, in, out;
    void backward() const {
      linear_backward(detail::grad_or_null(x), detail::grad_or_null(weight), detail::grad_or_null(bias), y->grad.data(),
                      x->data(), weight->data(), rows, in, out);
    }
  };
  if (y->requires_grad()) tape.record(Record{x, weight, bias, y, rows, in, out});
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
  T* stats = tape.template save<T>(2 * rows);  // mean, rstd: what backward needs
  layernorm_forward(y->data(), stats, stats + rows, x->data(), gamma->data(), beta->data(), rows, dim, eps);
  struct Record {
    Node<T>*x, *gamma, *beta, *y;
    const T *mean, *rstd;  // [rows] each, saved by the forward
    Index rows, dim;
    void backward() const {
      layernorm_backward(detail::grad_or_null(x), detail::grad_or_null(gamma), detail::grad_or_null(beta),
                         y->grad.data(), x->data(), mean, rstd, gamma->data(), rows, dim);
    }
  };
  if (y->requires_grad()) tape.record(Record{x, gamma, beta, y, stats, stats + rows, rows, dim});
  return y;
}

template <class T>
Node<T>* gelu(Tape<T>& tape, Node<T>* x) {
  Node<T>* y = tape.node(x->shape(), x->requires_grad());
  gelu_forward(y->data(), x->data(), x->size());
  struct Record {
    Node<T>*x, *y;
    void backward() const { gelu_backward(x->grad.data(), y->grad.data(), x->data(), x->size()); }
  };
  if (y->requires_grad()) tape.record(Record{x, y});
  return y;
}

template <class T>
Node<T>* hardswish(Tape<T>& tape, Node<T>* x) {
  Node<T>* y = tape.node(x->shape(), x->requires_grad());
  hardswish_forward(y->data(), x->data(), x->size());
  struct Record {
    Node<T>*x, *y;
    void backward() const { hardswish_backward(x->grad.data(), y->grad.data(), x->data(), x->size()); }
  };
  if (y->requires_grad()) tape.record(Record{x, y});
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
  struct Record {
    Node<T>*x, *weight, *bias, *y;
    Index batch, length, cin, cout, kernel;
    void backward() const {
      conv1d_backward(detail::grad_or_null(x), detail::grad_or_null(weight), detail::grad_or_null(bias), y->grad.data(),
                      x->data(), weight->data(), batch, length, cin, cout, kernel);
    }
  };
  if (y->requires_grad()) tape.record(Record{x, weight, bias, y, batch, length, cin, cout, kernel});
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
  struct Record {
    Node<T>*x, *weight, *bias, *y;
    Index batch, length, inner;
    void backward() const {
      triu_backward(detail::grad_or_null(x), detail::grad_or_null(weight), detail::grad_or_null(bias), y->grad.data(),
                    x->data(), weight->data(), batch, length, inner);
    }
  };
  if (y->requires_grad()) tape.record(Record{x, weight, bias, y, batch, length, inner});
  return y;
}

template <class T>
Node<T>* dropout(Tape<T>& tape, Node<T>* x, double p, std::uint64_t seed) {
  if (p == 0.0 || !tape.recording()) return x;
  T* mask = tape.template save<T>(x->size());
  dropout_mask(mask, x->size(), p, seed);
  Node<T>* y = tape.node(x->shape(), x->requires_grad());
  dropout_forward(y->data(), x->data(), mask, x->size());
  struct Record {
    Node<T>*x, *y;
    const T* mask;  // saved by the forward
    void backward() const { dropout_backward(x->grad.data(), y->grad.data(), mask, x->size()); }
  };
  if (y->requires_grad()) tape.record(Record{x, y, mask});
  return y;
}

template <class T>
Node<T>* add(Tape<T>& tape, Node<T>* a, Node<T>* b) {
  detail::expect(a->shape() == b->shape(), "add",
                 [&] { return "shapes differ: " + a->shape().str() + " and " + b->shape().str(); });
  Node<T>* y = tape.node(a->shape(), detail::any_grad<T>({a, b}));
  const Index n = a->size();
  for (Index i = 0; i < n; ++i) y->data()[i] = a->data()[i] + b->data()[i];
  struct Record {
    Node<T>*a, *b, *y;
    void backward() const {
      const T* dy = y->grad.data();
      for (Node<T>* n : {a, b})
        if (T* d = detail::grad_or_null(n))
          for (Index i = 0; i < y->size(); ++i) d[i] += dy[i];
    }
  };
  if (y->requires_grad()) tape.record(Record{a, b, y});
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
  struct Record {
    Node<T>* y;
    std::array<Node<T>*, 4> parts;  // null after the last
    Index batch, row;               // B, and the values of one output row (Σ L_k · C)
    void backward() const {
      const T* dy = y->grad.data();
      Index offset = 0;
      for (Node<T>* p : parts) {
        if (!p) break;
        const Index block = p->size() / batch;
        if (T* dp = detail::grad_or_null(p))
          for (Index b = 0; b < batch; ++b)
            for (Index i = 0; i < block; ++i) dp[b * block + i] += dy[b * row + offset + i];
        offset += block;
      }
    }
  };
  if (grad) {
    Record r{y, {}, batch, total * channels};
    std::copy(parts.begin(), parts.end(), r.parts.begin());
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
  struct Record {
    Node<T>*x, *y;
    Index batch, rows, cols;
    void backward() const {
      for (Index b = 0; b < batch; ++b)
        MatrixMap<T>(x->grad.data() + b * rows * cols, rows, cols) +=
            ConstMatrixMap<T>(y->grad.data() + b * rows * cols, cols, rows).transpose();
    }
  };
  if (y->requires_grad()) tape.record(Record{x, y, batch, rows, cols});
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
LossOutput<T> rank_loss(Tape<T>& tape, Node<T>* pred, Node<T>* base, Node<T>* gt, Node<T>* mask, T alpha,
                        RankLossWorkspace& workspace) {
  const Index n = pred->size();
  for (Node<T>* other : {base, gt, mask})
    detail::expect(other->size() == n, "rank_loss", [&] {
      return "prediction " + pred->shape().str() + " and " + other->shape().str() + " differ in size";
    });
  LossOutput<T> out;
  out.rr = tape.node(pred->shape(), false);
  out.loss = tape.node({1}, pred->requires_grad());
  // For a backward, the forward keeps each stock's S_i so that the backward needs no sort: O(N).
  const bool backward = out.loss->requires_grad();
  double* hinge = backward ? tape.template save<double>(n) : nullptr;
  const RankLoss<T> l = rank_loss_forward_sorted(out.rr->data(), pred->data(), base->data(), gt->data(), mask->data(),
                                                 n, alpha, workspace, hinge);
  out.loss->data()[0] = l.loss;
  out.reg = l.reg;
  out.rank = l.rank;
  struct Record {
    Node<T>*pred, *base, *gt, *mask, *rr, *loss;
    const double* hinge;  // S_i per stock, saved by the forward: the backward needs no sort
    Index n;
    T alpha;
    void backward() const {
      rank_loss_backward_from_hinge(pred->grad.data(), loss->grad.data()[0], rr->data(), base->data(), gt->data(),
                                    mask->data(), n, alpha, hinge);
    }
  };
  if (backward) tape.record(Record{pred, base, gt, mask, out.rr, out.loss, hinge, n, alpha});
  return out;
}

}  // namespace stockmixer::autograd
