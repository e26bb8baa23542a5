// stockmixer/kernels.hpp — every generic kernel (the model's fused blocks are in model/): plain template <class T> functions on contiguous row-major
// memory, forward and backward. Arguments are outputs, then inputs, then sizes; backward accumulates
// (+=) into gradients; forward saves only what backward cannot cheaply recompute.
#pragma once

#include "stockmixer/kernels/conv1d.hpp"
#include "stockmixer/kernels/dropout.hpp"
#include "stockmixer/kernels/gelu.hpp"
#include "stockmixer/kernels/hardswish.hpp"
#include "stockmixer/kernels/layernorm.hpp"
#include "stockmixer/kernels/linear.hpp"
#include "stockmixer/kernels/rank_loss.hpp"
#include "stockmixer/kernels/triu.hpp"
