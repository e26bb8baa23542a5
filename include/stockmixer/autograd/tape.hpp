// stockmixer/autograd/tape.hpp — the smallest tape that trains StockMixer.
//
// A Node is a tensor in the computation: a view of its value and, when it needs one, of its gradient.
// Parameters are nodes over memory their module owns; inputs are nodes over the caller's memory;
// every intermediate is a node over memory the tape owns.
//
// Ops (autograd/ops.hpp) compute their output with a kernel's forward and, when the tape records,
// push a Record: a captureless backward function plus the nodes and sizes it needs. `backward(loss)`
// seeds d(loss) = 1 and walks the records in reverse, each one calling its kernel's backward, which
// accumulates into its inputs' gradients. The order ops were recorded in is already a valid order.
//
// Memory is recycled: `reset()` forgets the records but keeps every intermediate's buffers, and the
// next pass through the same graph takes the same slots back in the same order, so a model that runs
// the same shapes again allocates nothing (the inference path relies on it).
#pragma once

#include "stockmixer/tensor.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <vector>

namespace stockmixer::autograd {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
struct Node {
  TensorMap<T> value;
  TensorMap<T> grad;  // empty (null data) when no gradient flows here

  bool requires_grad() const { return grad.data() != nullptr; }
  const Shape& shape() const { return value.shape(); }
  Index size() const { return value.size(); }
  T* data() const { return value.data(); }
  // Changes the shape only (same number of values): squeeze, unsqueeze, flatten are free.
  void reshape(Shape shape);
};

// What a recorded op's backward needs: nodes, sizes, one scalar, and for a fused op the weights it
// reads (owned by the module that recorded it, which outlives the backward).
template <class T>
struct Record {
  void (*backward)(const Record&) = nullptr;
  std::array<Node<T>*, 6> nodes{};
  std::array<Index, 6> sizes{};
  T scalar = T(0);
  const void* context = nullptr;
};

enum class Mode { kTrain, kInference };

template <class T>
class Tape {
 public:
  explicit Tape(Mode mode = Mode::kTrain) : mode_(mode) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  Tape(Tape&&) = default;  // a deque moves its blocks: nodes handed out stay valid
  Tape& operator=(Tape&&) = default;

  Mode mode() const { return mode_; }
  bool recording() const { return mode_ == Mode::kTrain; }

  // A new intermediate of this shape. Its gradient exists (zeroed) when `requires_grad` and the tape
  // records; its value is uninitialised.
  Node<T>* node(Shape shape, bool requires_grad);
  // A node over memory somebody else owns (an input, or a parameter outside a module).
  Node<T>* wrap(TensorMap<T> value, TensorMap<T> grad = {});

  void record(const Record<T>& r) {
    if (recording()) records_.push_back(r);
  }

  // Seeds d(output) = 1 (output must hold one value) and replays the records in reverse.
  void backward(Node<T>* output);
  // Seeds d(output) = seed (an upstream gradient of output's size) and replays the records.
  void backward(Node<T>* output, TensorMap<const T> seed);
  // Forgets the records and hands every slot back for the next pass. Buffers are kept.
  void reset();

  std::size_t records() const { return records_.size(); }

 private:
  struct Slot {
    Tensor<T> value, grad;
    Node<T> node;
  };
  Mode mode_;
  std::deque<Slot> slots_;  // deque: slots never move, so nodes handed out stay valid
  std::size_t used_ = 0;
  std::deque<Node<T>> wrapped_;
  std::size_t wrapped_used_ = 0;
  std::vector<Record<T>> records_;
};

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void Node<T>::reshape(Shape shape) {
  if (shape.size() != value.size())
    throw Error("stockmixer::autograd::Node::reshape: cannot reshape " + value.shape().str() + " to " + shape.str());
  value = TensorMap<T>(value.data(), shape);
  if (grad.data()) grad = TensorMap<T>(grad.data(), shape);
}

template <class T>
Node<T>* Tape<T>::node(Shape shape, bool requires_grad) {
  if (used_ == slots_.size()) slots_.emplace_back();
  Slot& s = slots_[used_++];
  s.value.resize(shape);
  s.node.value = s.value.map();
  if (requires_grad && recording()) {
    s.grad.resize(shape);
    s.grad.zero();
    s.node.grad = s.grad.map();
  } else {
    s.node.grad = TensorMap<T>();
  }
  return &s.node;
}

template <class T>
Node<T>* Tape<T>::wrap(TensorMap<T> value, TensorMap<T> grad) {
  if (wrapped_used_ == wrapped_.size()) wrapped_.emplace_back();
  Node<T>& n = wrapped_[wrapped_used_++];
  n.value = value;
  n.grad = recording() ? grad : TensorMap<T>();
  return &n;
}

template <class T>
void Tape<T>::backward(Node<T>* output) {
  if (!recording()) throw Error("stockmixer::autograd::Tape::backward: the tape is in inference mode");
  if (!output->requires_grad() || output->size() != 1)
    throw Error("stockmixer::autograd::Tape::backward: the output must be one value that needs a gradient, got " +
                output->shape().str());
  output->grad.data()[0] = T(1);
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) it->backward(*it);
}

template <class T>
void Tape<T>::backward(Node<T>* output, TensorMap<const T> seed) {
  if (!recording()) throw Error("stockmixer::autograd::Tape::backward: the tape is in inference mode");
  if (!output->requires_grad() || output->size() != seed.size())
    throw Error("stockmixer::autograd::Tape::backward: the seed gradient " + seed.shape().str() +
                " does not match the output " + output->shape().str());
  std::copy(seed.data(), seed.data() + seed.size(), output->grad.data());
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) it->backward(*it);
}

template <class T>
void Tape<T>::reset() {
  records_.clear();
  used_ = 0;
  wrapped_used_ = 0;
}

}  // namespace stockmixer::autograd
