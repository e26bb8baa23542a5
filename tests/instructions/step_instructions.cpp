// One NASDAQ-shaped training step (N = 1026, T = 16, C = 5, M = 20: forward, loss, backward, Adam) between
// callgrind's start and stop requests: the instruction count that tests/instructions/check_instructions.py
// compares with the committed baseline. Single-threaded (no OpenMP in this target) and seeded, so the
// count is the same to the instruction for the same binary; outside valgrind it just runs the step.
#include <stockmixer/train/trainer.hpp>

#include <valgrind/callgrind.h>

#include <cstdio>

int main() {
  using namespace stockmixer;
  data::SyntheticOptions o;
  o.stocks = 1026;
  o.days = 64;
  const data::Market<float> market = data::synthetic_market<float>(o);
  train::TrainConfig c;  // NASDAQ's model: T = 16, M = 20, alpha = 0.1, Adam(1e-3)
  c.valid_index = 40;
  c.test_index = 52;
  train::Trainer<float> trainer(market, c);
  trainer.train_step(0);  // the first step sizes every buffer; the measured one is steady state

  CALLGRIND_START_INSTRUMENTATION;
  const double loss = trainer.train_step(7).loss;
  CALLGRIND_STOP_INSTRUMENTATION;
  std::printf("one training step, N=1026 T=16 C=5 M=20: loss %.6g\n", loss);
  return 0;
}
