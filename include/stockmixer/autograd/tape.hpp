// stockmixer/autograd/tape.hpp — the smallest tape that trains StockMixer.
//
// A Node is a tensor in the computation: a view of its value and, when it needs one, of its gradient.
// Parameters are nodes over the parameter store (parameters.hpp); inputs are nodes over the caller's
// memory; every intermediate is a node over memory the tape owns.
//
// An op computes its output with a kernel's forward and, when the tape records, records a struct of
// its own type holding, as typed members, what its backward needs (nodes, sizes, saved buffers), and
// whose `backward() const` calls the kernel's backward, accumulating into its inputs' gradients
// (torch.autograd.Function's shape; the generic ops are in autograd/ops.hpp, the model's fused blocks
// record theirs in model.hpp). `backward(loss)` seeds d(loss) = 1 and calls the records in reverse:
// the order ops were recorded in is already a valid order.
//
// Memory is recycled: `reset()` forgets the records but keeps every buffer, and the next pass through
// the same graph takes the same buffers back in the same order, so a model that runs the same shapes
// again allocates nothing (inference and the training step rely on it).
#pragma once

#include "stockmixer/parameters.hpp"
#include "stockmixer/tensor.hpp"
#include "stockmixer/workspace.hpp"

#include <cstdint>
#include <algorithm>
#include <cstddef>
#include <deque>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
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
};

enum class Mode { kTrain, kInference };

template <class T>
class Tape {
 public:
  explicit Tape(Mode mode = Mode::kTrain) : mode_(mode) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  Tape(Tape&&) = default;  // deques and blocks move whole: nodes and buffers handed out stay valid
  Tape& operator=(Tape&&) = default;

  bool recording() const { return mode_ == Mode::kTrain; }

  // A new intermediate of this shape. Its gradient exists (zeroed) when `requires_grad` and the tape
  // records; its value is uninitialised.
  Node<T>* node(Shape shape, bool requires_grad);
  // A node over memory somebody else owns (an input).
  Node<T>* wrap(TensorMap<T> value, TensorMap<T> grad = {});
  // A parameter's node: its values and, when the tape records, its gradient.
  Node<T>* parameter(const Parameter<T>& p) {
    return wrap(TensorMap<T>(p.value(), p.shape()), TensorMap<T>(p.grad(), p.shape()));
  }
  // `count` values of U kept for a backward (an op's saved statistics or activations), 64-byte
  // aligned, contents unspecified; valid until reset().
  template <class U>
  U* save(Index count);

  // Records op when the tape records: a struct with a `void backward() const` and, as members, what
  // that backward reads (views and sizes, never owners: records are recycled without destruction).
  template <class Op>
  void record(const Op& op);

  // Seeds d(output) = 1 (output must hold one value) and replays the records in reverse.
  void backward(Node<T>* output);
  // Seeds d(output) = seed (an upstream gradient of output's size) and replays the records.
  void backward(Node<T>* output, TensorMap<const T> seed);
  // Dropout's seeds. set_seed(s) starts a pass's stream (a training step sets one per step) and each
  // draw_seed() is the next seed of it, so every dropout of a pass draws its own mask, every step new
  // ones, and the same s the same masks again. reset() restarts the stream of the same s.
  void set_seed(std::uint64_t seed) {
    seed_ = seed;
    draws_ = 0;
  }
  std::uint64_t draw_seed() {
    std::uint64_t z = seed_ + (++draws_) * 0x9E3779B97F4A7C15ull;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Forgets the records and hands every slot back for the next pass. Buffers are kept.
  void reset() {
    draws_ = 0;
    records_.clear();
    used_ = wrapped_used_ = saved_used_ = saved_doubles_used_ = 0;
    block_ = block_used_ = 0;
  }

 private:
  struct Slot {
    Tensor<T> value, grad;
    Node<T> node;
  };
  // A record as the tape replays it: any op's struct behind one interface.
  struct Record {
    virtual void backward() const = 0;

   protected:
    ~Record() = default;
  };
  template <class Op>
  struct Recorded final : Record {
    explicit Recorded(const Op& o) : op(o) {}
    void backward() const override { op.backward(); }
    Op op;
  };
  // Records live in blocks of kBlock bytes, handed out in order and recycled by reset().
  static constexpr std::size_t kBlock = 16384;
  std::byte* allocate_record(std::size_t size, std::size_t align);
  void replay() {
    for (auto it = records_.rbegin(); it != records_.rend(); ++it) (*it)->backward();
  }

  Mode mode_;
  std::uint64_t seed_ = 0, draws_ = 0;  // dropout's seed stream
  std::deque<Slot> slots_;  // deque: slots never move, so nodes handed out stay valid
  std::size_t used_ = 0;
  std::deque<Node<T>> wrapped_;
  std::size_t wrapped_used_ = 0;
  std::deque<Scratch<T>> saved_;
  std::deque<Scratch<double>> saved_doubles_;
  std::size_t saved_used_ = 0, saved_doubles_used_ = 0;
  std::vector<std::unique_ptr<std::byte[]>> blocks_;
  std::size_t block_ = 0, block_used_ = 0;  // the block records go to now, and its bytes taken
  std::vector<const Record*> records_;
};

// ---- implementation --------------------------------------------------------------------------------

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
template <class U>
U* Tape<T>::save(Index count) {
  static_assert(std::is_same_v<U, T> || std::is_same_v<U, double>, "a tape saves values of T or double");
  if constexpr (std::is_same_v<U, T>) {
    if (saved_used_ == saved_.size()) saved_.emplace_back();
    return saved_[saved_used_++].get(count);
  } else {
    if (saved_doubles_used_ == saved_doubles_.size()) saved_doubles_.emplace_back();
    return saved_doubles_[saved_doubles_used_++].get(count);
  }
}

template <class T>
std::byte* Tape<T>::allocate_record(std::size_t size, std::size_t align) {
  static_assert(kBlock % alignof(std::max_align_t) == 0);
  for (;; ++block_, block_used_ = 0) {
    if (block_ == blocks_.size()) blocks_.push_back(std::make_unique<std::byte[]>(std::max(kBlock, size)));
    const std::size_t at = (block_used_ + align - 1) / align * align;
    if (at + size <= std::max(kBlock, size)) {
      block_used_ = at + size;
      return blocks_[block_].get() + at;
    }
  }
}

template <class T>
template <class Op>
void Tape<T>::record(const Op& op) {
  static_assert(std::is_trivially_destructible_v<Op>, "records are recycled without destruction: views only");
  static_assert(alignof(Recorded<Op>) <= alignof(std::max_align_t));
  if (!recording()) return;
  records_.push_back(new (allocate_record(sizeof(Recorded<Op>), alignof(Recorded<Op>))) Recorded<Op>(op));
}

template <class T>
void Tape<T>::backward(Node<T>* output) {
  if (!recording()) throw Error("stockmixer::autograd::Tape::backward: the tape is in inference mode");
  if (!output->requires_grad() || output->size() != 1)
    throw Error("stockmixer::autograd::Tape::backward: the output must be one value that needs a gradient, got " +
                output->shape().str());
  output->grad.data()[0] = T(1);
  replay();
}

template <class T>
void Tape<T>::backward(Node<T>* output, TensorMap<const T> seed) {
  if (!recording()) throw Error("stockmixer::autograd::Tape::backward: the tape is in inference mode");
  if (!output->requires_grad() || output->size() != seed.size())
    throw Error("stockmixer::autograd::Tape::backward: the seed gradient " + seed.shape().str() +
                " does not match the output " + output->shape().str());
  std::copy(seed.data(), seed.data() + seed.size(), output->grad.data());
  replay();
}

}  // namespace stockmixer::autograd
