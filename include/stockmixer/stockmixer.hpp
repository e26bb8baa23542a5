// stockmixer/stockmixer.hpp — the whole library in one include.
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/kernels.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/tensor.hpp"
#include "stockmixer/xtensor.hpp"
