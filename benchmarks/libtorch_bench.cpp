// libtorch_bench — the original StockMixer network and get_loss in LibTorch C++ (Debian's libtorch-dev),
// the anchor that benchmarks/compare_pytorch.py --libtorch puts beside stockmixer: the same network
// as PyTorch runs it, without Python's per-op overhead.
//
//   libtorch_bench --stocks N [--lookback 16] [--features 5] [--market 20] [--threads 1] [--budget 20]
//       times a training step (zero_grad, forward, get_loss, backward, torch::optim::Adam(lr 1e-3)) and
//       inference (forward under NoGradGuard) on random data of that shape; prints one JSON object with
//       the medians (train_step_ms, inference_ms) and the iterations behind them.
//   libtorch_bench --check --weights W.safetensors --input X.npy --out P.npy [--threads 1]
//       loads a stockmixer (or PyTorch) safetensors checkpoint under PyTorch's state_dict names into
//       this network, predicts X [N, T, C] (float32 .npy) and writes the predictions [N, 1] (float32
//       .npy), to be compared with `stockmixer predict` on the same files.
//
// The modules below are src/model.py as the article prints it (tests/make_model_fixtures.py holds the
// Python copy), op for op: TriU concatenates its outputs one step at a time, NoGraphMixer permutes,
// get_loss builds its three N x N matrices. MultTime2dMixer's scale length is T / 2 (the original's 8
// at T = 16). The weights' initial values do not matter for the timings (the arithmetic does not
// depend on them); --check replaces them all with the checkpoint's.
//
// Timing follows compare_pytorch.py's PyTorch worker: two untimed calls, then up to 200 timed ones,
// at least 3, stopping once they add up to --budget seconds; the median is reported. One process
// measures one shape; --threads sets both torch::set_num_threads and the inter-op pool.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using torch::Tensor;

// ---- the original network (src/model.py) -------------------------------------------------------------

// MixerBlock(mlp_dim, hidden_dim) with dropout 0 (as Mixer2dTriU builds it): dense_2(GELU(dense_1(x))).
struct MixerBlockImpl : torch::nn::Module {
  MixerBlockImpl(int64_t mlp_dim, int64_t hidden_dim)
      : dense_1(register_module("dense_1", torch::nn::Linear(mlp_dim, hidden_dim))),
        dense_2(register_module("dense_2", torch::nn::Linear(hidden_dim, mlp_dim))) {}
  Tensor forward(const Tensor& x) { return dense_2(torch::gelu(dense_1(x))); }  // GELU: the exact erf form
  torch::nn::Linear dense_1, dense_2;
};
TORCH_MODULE(MixerBlock);

// TriU(L) on [B, K, L]: output step i is Linear(i + 1, 1) of steps 0..i, concatenated one at a time.
struct TriUImpl : torch::nn::Module {
  explicit TriUImpl(int64_t time_step) : triU(register_module("triU", torch::nn::ModuleList())) {
    for (int64_t i = 0; i < time_step; ++i) {
      torch::nn::Linear l(i + 1, 1);
      triU->push_back(l);
      steps.push_back(l);
    }
  }
  Tensor forward(const Tensor& inputs) {
    Tensor x = steps[0](inputs.narrow(2, 0, 1));
    for (std::size_t i = 1; i < steps.size(); ++i)
      x = torch::cat({x, steps[i](inputs.narrow(2, 0, static_cast<int64_t>(i) + 1))}, -1);
    return x;
  }
  torch::nn::ModuleList triU;
  std::vector<torch::nn::Linear> steps;  // the same modules as triU, typed
};
TORCH_MODULE(TriU);

// Mixer2dTriU(T, C) on [N, T, C].
struct Mixer2dTriUImpl : torch::nn::Module {
  Mixer2dTriUImpl(int64_t time_steps, int64_t channels)
      : LN_1(register_module("LN_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({time_steps, channels})))),
        LN_2(register_module("LN_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({time_steps, channels})))),
        timeMixer(register_module("timeMixer", TriU(time_steps))),
        channelMixer(register_module("channelMixer", MixerBlock(channels, channels))) {}
  Tensor forward(const Tensor& inputs) {
    Tensor x = LN_1(inputs);
    x = x.permute({0, 2, 1});
    x = timeMixer(x);
    x = x.permute({0, 2, 1});
    x = LN_2(x + inputs);
    Tensor y = channelMixer(x);
    return x + y;
  }
  torch::nn::LayerNorm LN_1, LN_2;
  TriU timeMixer;
  MixerBlock channelMixer;
};
TORCH_MODULE(Mixer2dTriU);

struct MultTime2dMixerImpl : torch::nn::Module {
  MultTime2dMixerImpl(int64_t time_step, int64_t channel, int64_t scale_dim)
      : mix_layer(register_module("mix_layer", Mixer2dTriU(time_step, channel))),
        scale_mix_layer(register_module("scale_mix_layer", Mixer2dTriU(scale_dim, channel))) {}
  Tensor forward(const Tensor& inputs, Tensor y) {
    y = scale_mix_layer(y);
    Tensor x = mix_layer(inputs);
    return torch::cat({inputs, x, y}, 1);
  }
  Mixer2dTriU mix_layer, scale_mix_layer;
};
TORCH_MODULE(MultTime2dMixer);

// NoGraphMixer(N, M) on [N, F]: LayerNorm over the stocks, dense1 N -> M, Hardswish, dense2 M -> N.
struct NoGraphMixerImpl : torch::nn::Module {
  NoGraphMixerImpl(int64_t stocks, int64_t hidden_dim)
      : dense1(register_module("dense1", torch::nn::Linear(stocks, hidden_dim))),
        dense2(register_module("dense2", torch::nn::Linear(hidden_dim, stocks))),
        layer_norm_stock(register_module("layer_norm_stock", torch::nn::LayerNorm(torch::nn::LayerNormOptions({stocks})))) {}
  Tensor forward(const Tensor& inputs) {
    Tensor x = inputs.permute({1, 0});
    x = layer_norm_stock(x);
    x = dense1(x);
    x = torch::hardswish(x);
    x = dense2(x);
    return x.permute({1, 0});
  }
  torch::nn::Linear dense1, dense2;
  torch::nn::LayerNorm layer_norm_stock;
};
TORCH_MODULE(NoGraphMixer);

struct StockMixerImpl : torch::nn::Module {
  StockMixerImpl(int64_t stocks, int64_t time_steps, int64_t channels, int64_t market)
      : mixer(register_module("mixer", MultTime2dMixer(time_steps, channels, time_steps / 2))),
        channel_fc(register_module("channel_fc", torch::nn::Linear(channels, 1))),
        time_fc(register_module("time_fc", torch::nn::Linear(time_steps * 2 + time_steps / 2, 1))),
        conv(register_module("conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, 2).stride(2)))),
        stock_mixer(register_module("stock_mixer", NoGraphMixer(stocks, market))),
        time_fc_(register_module("time_fc_", torch::nn::Linear(time_steps * 2 + time_steps / 2, 1))) {}
  // inputs [N, T, C] -> the predicted next close [N, 1].
  Tensor forward(const Tensor& inputs) {
    Tensor x = inputs.permute({0, 2, 1});
    x = conv(x);
    x = x.permute({0, 2, 1});
    Tensor y = mixer(inputs, x);
    y = channel_fc(y).squeeze(-1);
    Tensor z = stock_mixer(y);
    y = time_fc(y);
    z = time_fc_(z);
    return y + z;
  }
  MultTime2dMixer mixer;
  torch::nn::Linear channel_fc, time_fc;
  torch::nn::Conv1d conv;
  NoGraphMixer stock_mixer;
  torch::nn::Linear time_fc_;
};
TORCH_MODULE(StockMixer);

// get_loss as the original writes it (the three N x N matrices included); returns the loss only.
Tensor get_loss(const Tensor& prediction, const Tensor& ground_truth, const Tensor& base_price, const Tensor& mask,
                int64_t batch_size, double alpha) {
  const Tensor all_one = torch::ones({batch_size, 1}, prediction.options());
  const Tensor return_ratio = torch::div(torch::sub(prediction, base_price), base_price);
  const Tensor reg_loss = torch::mse_loss(return_ratio * mask, ground_truth * mask);
  const Tensor pre_pw_dif = torch::sub(return_ratio.mm(all_one.t()), all_one.mm(return_ratio.t()));
  const Tensor gt_pw_dif = torch::sub(all_one.mm(ground_truth.t()), ground_truth.mm(all_one.t()));
  const Tensor mask_pw = mask.mm(mask.t());
  const Tensor rank_loss = torch::relu(pre_pw_dif * gt_pw_dif * mask_pw).mean();
  return reg_loss + alpha * rank_loss;
}

// ---- files -------------------------------------------------------------------------------------------

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open the " + std::string(what));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A safetensors file: an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets}, "__metadata__": {...}}, then the data. Tensors are read as float32 (F32 copied, F64
// converted); every tensor's extent is checked against the data.
struct Safetensors {
  explicit Safetensors(std::string p) : path(std::move(p)), bytes(read_file(path, "safetensors checkpoint (--weights)")) {
    if (bytes.size() < 8) fail(path + ": " + std::to_string(bytes.size()) + " bytes, too short for a safetensors file");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
    if (n > bytes.size() - 8) fail(path + ": header length " + std::to_string(n) + " exceeds the file");
    try {
      header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    } catch (const nlohmann::json::exception& e) {
      fail(path + ": the JSON header does not parse: " + e.what());
    }
    if (!header.is_object()) fail(path + ": the JSON header is not an object");
    data = 8 + n;
  }
  bool has(const std::string& name) const { return header.contains(name); }
  std::vector<int64_t> shape(const std::string& name) const {
    if (!has(name)) fail(path + ": no tensor '" + name + "'");
    return header.at(name).at("shape").get<std::vector<int64_t>>();
  }
  Tensor read(const std::string& name) const {
    const auto& e = header.at(name);
    const std::string dtype = e.at("dtype").get<std::string>();
    const auto offsets = e.at("data_offsets").get<std::vector<uint64_t>>();
    const std::vector<int64_t> dims = shape(name);
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    const uint64_t width = dtype == "F32" ? 4 : dtype == "F64" ? 8 : 0;
    if (width == 0) fail(path + ": tensor '" + name + "' has dtype " + dtype + ", expected F32 or F64");
    if (offsets.size() != 2 || offsets[1] < offsets[0] || offsets[1] - offsets[0] != width * static_cast<uint64_t>(count) ||
        data + offsets[1] > bytes.size())
      fail(path + ": tensor '" + name + "' " + shape_str(dims) + " " + dtype + ": its data_offsets do not hold " +
           std::to_string(count) + " values inside the file");
    const char* p = bytes.data() + data + offsets[0];
    Tensor t = torch::empty(dims, torch::kFloat32);
    float* out = t.data_ptr<float>();
    for (int64_t i = 0; i < count; ++i) {
      if (width == 4) {
        std::memcpy(out + i, p + 4 * i, 4);
      } else {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
    }
    return t;
  }
  std::string path, bytes;
  nlohmann::json header;
  uint64_t data = 0;
};

// Loads every parameter by its state_dict name; a missing, misshapen or extra tensor is an error.
void load_weights(StockMixer& model, const Safetensors& file) {
  torch::NoGradGuard no_grad;
  std::map<std::string, bool> seen;
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (!file.has(name)) fail(file.path + ": missing tensor '" + name + "' " + shape_str(p.value().sizes().vec()));
    const auto shape = file.shape(name);
    if (shape != p.value().sizes().vec())
      fail(file.path + ": tensor '" + name + "' has shape " + shape_str(shape) + ", expected " +
           shape_str(p.value().sizes().vec()));
    p.value().copy_(file.read(name));
    seen[name] = true;
  }
  for (const auto& item : file.header.items())
    if (item.key() != "__metadata__" && !seen.count(item.key()))
      fail(file.path + ": unexpected tensor '" + item.key() + "' (not a parameter of the original StockMixer)");
}

// A float32 C-order .npy (versions 1 to 3) as a tensor.
Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path, "input .npy (--input)");
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) fail(path + ": not a .npy file (no \\x93NUMPY magic)");
  const int major = bytes[6];
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  std::size_t len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i) len |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  const std::size_t start = 8 + len_bytes + len;
  if (start > bytes.size()) fail(path + ": the .npy header runs past the end of the file");
  const std::string header = bytes.substr(8 + len_bytes, len);
  if (header.find("'descr': '<f4'") == std::string::npos)
    fail(path + ": dtype is not float32 ('<f4'); header " + header);
  if (header.find("'fortran_order': False") == std::string::npos) fail(path + ": not C order; header " + header);
  const std::size_t open = header.find("'shape': (");
  if (open == std::string::npos) fail(path + ": no shape in the header " + header);
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (const char* s = header.c_str() + open + 10; *s && *s != ')';) {
    char* end = nullptr;
    const long long v = std::strtoll(s, &end, 10);
    if (end == s) {
      ++s;
      continue;
    }
    shape.push_back(v);
    count *= v;
    s = end;
  }
  if (bytes.size() - start != static_cast<std::size_t>(count) * 4)
    fail(path + ": shape " + shape_str(shape) + " needs " + std::to_string(count * 4) + " bytes of data, the file has " +
         std::to_string(bytes.size() - start));
  Tensor t = torch::empty(shape, torch::kFloat32);
  std::memcpy(t.data_ptr<float>(), bytes.data() + start, static_cast<std::size_t>(count) * 4);
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  const Tensor c = t.contiguous().to(torch::kFloat32);
  std::string shape;
  for (int64_t d : c.sizes()) shape += std::to_string(d) + ", ";
  if (c.dim() > 1) shape.erase(shape.size() - 2);  // (N, 1); a 1-d shape keeps its comma: (N,)
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // the data starts at a multiple of 64
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::size_t>(c.numel()) * 4);
  std::ofstream f(path, std::ios::binary);
  if (!f.write(out.data(), static_cast<std::streamsize>(out.size()))) fail(path + ": cannot write the predictions (--out)");
}

// ---- the two modes -----------------------------------------------------------------------------------

struct Args {
  int64_t stocks = 0, lookback = 16, features = 5, market = 20;
  int threads = 1;
  double budget = 20.0;
  bool check = false;
  std::string weights, input, out;
};

Args parse(int argc, char** argv) {
  Args a;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) fail(std::string(argv[i]) + ": expected a value after it");
    return argv[++i];
  };
  auto integer = [&](int& i, int64_t lo) -> int64_t {
    const std::string flag = argv[i], v = value(i);
    char* end = nullptr;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < lo) fail(flag + " " + v + ": expected an integer >= " + std::to_string(lo));
    return n;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--stocks") a.stocks = integer(i, 1);
    else if (f == "--lookback") a.lookback = integer(i, 2);
    else if (f == "--features") a.features = integer(i, 1);
    else if (f == "--market") a.market = integer(i, 1);
    else if (f == "--threads") a.threads = static_cast<int>(integer(i, 1));
    else if (f == "--budget") {
      const std::string v = value(i);
      char* end = nullptr;
      a.budget = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(a.budget >= 0)) fail("--budget " + v + ": expected seconds >= 0");
    } else if (f == "--check") a.check = true;
    else if (f == "--weights") a.weights = value(i);
    else if (f == "--input") a.input = value(i);
    else if (f == "--out") a.out = value(i);
    else fail("unknown option " + f + " (see the head of benchmarks/libtorch_bench.cpp)");
  }
  if (a.check && (a.weights.empty() || a.input.empty() || a.out.empty()))
    fail("--check needs --weights W.safetensors, --input X.npy and --out P.npy");
  if (!a.check && a.stocks == 0) fail("--stocks N is required (or --check)");
  if (!a.check && a.lookback % 2 != 0) fail("--lookback " + std::to_string(a.lookback) + ": expected an even T");
  return a;
}

int check(const Args& a) {
  const Safetensors file(a.weights);
  const auto dense1 = file.shape("stock_mixer.dense1.weight");  // [M, N]
  const auto ln1 = file.shape("mixer.mix_layer.LN_1.weight");    // [T, C]
  if (dense1.size() != 2 || ln1.size() != 2)
    fail(a.weights + ": stock_mixer.dense1.weight " + shape_str(dense1) + " and mixer.mix_layer.LN_1.weight " +
         shape_str(ln1) + ": expected [M, N] and [T, C]");
  StockMixer model(dense1[1], ln1[0], ln1[1], dense1[0]);
  load_weights(model, file);
  model->eval();
  const Tensor x = read_npy(a.input);
  if (x.sizes().vec() != std::vector<int64_t>{dense1[1], ln1[0], ln1[1]})
    fail(a.input + ": shape " + shape_str(x.sizes().vec()) + ", the weights expect " +
         shape_str({dense1[1], ln1[0], ln1[1]}) + " [N, T, C]");
  torch::NoGradGuard no_grad;
  write_npy(a.out, model(x));
  return 0;
}

template <class F>
std::pair<double, int> median_ms(F&& fn, double budget) {
  fn();
  fn();
  std::vector<double> times;
  double total = 0;
  while (times.size() < 200 && (times.size() < 3 || total < budget)) {
    const auto s = std::chrono::steady_clock::now();
    fn();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
    times.push_back(t);
    total += t;
  }
  std::sort(times.begin(), times.end());
  const std::size_t n = times.size();
  const double median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  return {1000 * median, static_cast<int>(n)};
}

int bench(const Args& a) {
  const int64_t n = a.stocks;
  torch::manual_seed(0);
  StockMixer model(n, a.lookback, a.features, a.market);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  // compare_pytorch.py's batch: x uniform on [0.5, 1.5), the base the last close, returns N(0, 0.02),
  // about 95 % of the mask ones.
  const Tensor x = torch::rand({n, a.lookback, a.features}) + 0.5;
  const Tensor base = x.select(1, a.lookback - 1).narrow(1, a.features - 1, 1).clone();
  const Tensor gt = torch::randn({n, 1}) * 0.02;
  const Tensor mask = (torch::rand({n, 1}) > 0.05).to(torch::kFloat32);
  auto step = [&] {
    opt.zero_grad();
    get_loss(model(x), gt, base, mask, n, 0.1).backward();
    opt.step();
  };
  auto infer = [&] {
    torch::NoGradGuard no_grad;
    model(x);
  };
  const auto [step_ms, step_iters] = median_ms(step, a.budget);
  const auto [inference_ms, inference_iters] = median_ms(infer, a.budget);
  const nlohmann::json out = {{"stocks", n},
                              {"lookback", a.lookback},
                              {"features", a.features},
                              {"market", a.market},
                              {"threads", torch::get_num_threads()},
                              {"torch", TORCH_VERSION},
                              {"train_step_ms", step_ms},
                              {"train_step_iters", step_iters},
                              {"inference_ms", inference_ms},
                              {"inference_iters", inference_iters}};
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    torch::set_num_threads(a.threads);
    at::set_num_interop_threads(1);
    return a.check ? check(a) : bench(a);
  } catch (const std::exception& e) {
    std::cerr << "libtorch_bench: " << e.what() << "\n";
    return 1;
  }
}
