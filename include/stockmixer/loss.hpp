// stockmixer/loss.hpp — get_loss, as the original (SPEC §4): masked MSE of return ratios plus alpha
// times the pairwise ranking hinge. The math is kernels/rank_loss.hpp.
#pragma once

#include "stockmixer/autograd/ops.hpp"

namespace stockmixer {

// pred, gt, base, mask: [N, 1] nodes. Returns loss (a node to call backward on), reg and rank, and
// rr (the predicted return ratios, [N, 1]). The rank term's sorts run in `workspace` (the caller's).
template <class T>
autograd::LossOutput<T> get_loss(autograd::Tape<T>& tape, autograd::Node<T>* prediction,
                                 autograd::Node<T>* ground_truth, autograd::Node<T>* base_price,
                                 autograd::Node<T>* mask, T alpha, RankLossWorkspace& workspace) {
  return autograd::rank_loss(tape, prediction, base_price, ground_truth, mask, alpha, workspace);
}

}  // namespace stockmixer
