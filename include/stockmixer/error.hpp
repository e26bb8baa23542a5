// stockmixer/error.hpp — the library's error type, alone, so that code built without Eigen (the CUDA
// unit, src/cuda/) raises the same type as every header (common.hpp includes this).
#pragma once

#include <stdexcept>

namespace stockmixer {

// Every error the library raises on bad input: the message names the tensor, file or line and what
// was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace stockmixer
