// stockmixer/stockmixer.hpp — the whole library in one include.
#pragma once

#include "stockmixer/autograd/ops.hpp"
#include "stockmixer/autograd/tape.hpp"
#include "stockmixer/common.hpp"
#include "stockmixer/io/safetensors.hpp"
#include "stockmixer/kernels.hpp"
#include "stockmixer/loss.hpp"
#include "stockmixer/model.hpp"
#include "stockmixer/nn/layers.hpp"
#include "stockmixer/nn/mixers.hpp"
#include "stockmixer/nn/module.hpp"
#include "stockmixer/optim/adam.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/tensor.hpp"
#include "stockmixer/xtensor.hpp"
