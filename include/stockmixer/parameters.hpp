// stockmixer/parameters.hpp — every parameter of a model in one store.
//
// A ParameterStore holds the values of all parameters in one allocation and their gradients in the
// same allocation right after them, laid out as the modules declare their tensors: in PyTorch's
// registration order, which is state_dict order. An optimiser keeps its moments in one allocation of
// the same layout (optim/adam.hpp), so zeroing the gradients is one fill and an update one loop over
// contiguous memory (llm.c's ParameterTensors). A module's tensor is a Parameter: a view into the
// store, bound once when the store is allocated and never rebound. The name table lists every
// PyTorch state_dict key, in order, as a Parameter too: checkpoints, optimiser state and the
// gradients a user reads all walk it.
//
// A module may keep a tensor whole where PyTorch splits it: TriU keeps its lower-triangular weight as
// one [L, L] matrix (the upper triangle zero, named by no key, its gradient always zero) whose rows
// are the keys `triU.i.weight`. Every entry of the name table is contiguous.
#pragma once

#include "stockmixer/tensor.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
class ParameterStore;

// A tensor of parameters: a view of its values and its gradient in a ParameterStore, with its
// state_dict name where it has one. Copies view the same memory.
template <class T>
class Parameter {
 public:
  Parameter() = default;
  explicit Parameter(Shape shape) : shape_(shape) {}

  const std::string& name() const { return name_; }
  const Shape& shape() const { return shape_; }
  Index size() const { return shape_.size(); }
  Index offset() const { return offset_; }  // of its first value in the store
  T* value() const { return value_; }       // null until the store is allocated
  T* grad() const { return grad_; }

 private:
  friend class ParameterStore<T>;
  std::string name_;
  Shape shape_;
  Index offset_ = -1;
  T* value_ = nullptr;
  T* grad_ = nullptr;
};

template <class T>
class ParameterStore {
 public:
  ParameterStore() = default;
  ParameterStore(const ParameterStore&) = delete;  // modules hold views into it
  ParameterStore& operator=(const ParameterStore&) = delete;
  ParameterStore(ParameterStore&&) = default;  // the allocation moves with it: the views stay valid
  ParameterStore& operator=(ParameterStore&&) = default;

  // Declaring, before allocate(). A module's tensor p: under one state_dict name, or (add_storage)
  // under none, its parts then named with add_view (offset and shape within p). add(name, shape)
  // declares a tensor the store alone holds (an optimiser's unit tests, a caller's own parameters).
  void add(const std::string& name, Parameter<T>& p) {
    this->name(name, size_, p.shape());  // checks the name first: a refused tensor is not declared
    declare(p);
    p.name_ = name;
  }
  void add(const std::string& name, Shape shape) {
    this->name(name, size_, shape);
    size_ += shape.size();
  }
  void add_storage(Parameter<T>& p) {
    if (done_) throw Error("stockmixer::ParameterStore: a tensor declared after the store was allocated");
    declare(p);
  }
  void add_view(const std::string& name, const Parameter<T>& storage, Index offset, Shape shape);
  // One zeroed allocation for every value and gradient; binds every declared tensor. Once only.
  void allocate();

  bool allocated() const { return done_; }
  Index size() const { return size_; }  // values (and gradients) in the store
  T* values() { return memory_.data(); }
  const T* values() const { return memory_.data(); }
  T* grads() { return memory_.data() + size_; }
  const T* grads() const { return memory_.data() + size_; }
  void zero_grad() { std::fill(grads(), grads() + size_, T(0)); }

  // The name table, in state_dict order.
  using const_iterator = typename std::vector<Parameter<T>>::const_iterator;
  const_iterator begin() const { return table_.begin(); }
  const_iterator end() const { return table_.end(); }
  Index count() const { return static_cast<Index>(table_.size()); }  // named tensors
  const Parameter<T>& operator[](Index i) const { return table_.at(static_cast<std::size_t>(i)); }
  const Parameter<T>* find(const std::string& name) const {  // null when no tensor has that name
    for (const auto& p : table_)
      if (p.name() == name) return &p;
    return nullptr;
  }
  const Parameter<T>& at(const std::string& name) const {  // throws Error naming it
    if (const Parameter<T>* p = find(name)) return *p;
    throw Error("stockmixer::ParameterStore: no parameter named '" + name + "'");
  }

 private:
  Index declare(Parameter<T>& p);  // assigns p its offset
  void name(const std::string& name, Index offset, Shape shape);

  std::vector<Parameter<T>> table_;
  std::vector<Parameter<T>*> pending_;  // declared module tensors, bound by allocate()
  Tensor<T> memory_;                    // [values | gradients], 2 · size_
  Index size_ = 0;
  bool done_ = false;
};

// ---- implementation --------------------------------------------------------------------------------

template <class T>
Index ParameterStore<T>::declare(Parameter<T>& p) {
  p.offset_ = size_;
  size_ += p.size();
  pending_.push_back(&p);
  return p.offset_;
}

template <class T>
void ParameterStore<T>::name(const std::string& name, Index offset, Shape shape) {
  if (done_) throw Error("stockmixer::ParameterStore: '" + name + "' declared after the store was allocated");
  if (find(name)) throw Error("stockmixer::ParameterStore: two tensors are named '" + name + "'");
  Parameter<T> entry(shape);
  entry.name_ = name;
  entry.offset_ = offset;
  table_.push_back(std::move(entry));
}

template <class T>
void ParameterStore<T>::add_view(const std::string& name, const Parameter<T>& storage, Index offset, Shape shape) {
  if (offset < 0 || offset + shape.size() > storage.size())
    throw Error("stockmixer::ParameterStore: '" + name + "' " + shape.str() + " at " + std::to_string(offset) +
                " does not lie inside its tensor " + storage.shape().str());
  this->name(name, storage.offset() + offset, shape);
}

template <class T>
void ParameterStore<T>::allocate() {
  if (done_) throw Error("stockmixer::ParameterStore: allocated twice");
  done_ = true;
  memory_ = Tensor<T>(Shape{2 * size_});  // zeroed
  auto bind = [&](Parameter<T>& p) {
    p.value_ = values() + p.offset_;
    p.grad_ = grads() + p.offset_;
  };
  for (Parameter<T>* p : pending_) bind(*p);
  for (Parameter<T>& p : table_) bind(p);
  pending_.clear();  // the module tensors may move with their model from here on
}

}  // namespace stockmixer
