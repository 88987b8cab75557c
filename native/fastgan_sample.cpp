// fastgan-sample: run a generator exported by `fastgan export` (an AOTInductor package)
// from C++, without Python, and write N samples for one condition to a PNG grid or a
// float32 .npy array.
//
//   fastgan-sample --package gen.pt2 --cond 7 --n 16 --seed 0 --out sevens.png
//
// The noise is the noise `fastgan sample` draws for the same --seed: randn(n, latent_dim)
// from a CPU generator seeded with it, then moved to the device. Both sides run the same
// libtorch code for this (the library inside the torch wheel), so z is bit-identical and
// the two commands give the same samples up to the float rounding of the compiled code.
// The grid has the layout of `fastgan sample`'s. Bad input: one line on stderr, exit 2;
// a package that fails to load or run: exit 1.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "image_io.h"

namespace {

constexpr const char* kProgram = "fastgan-sample";
constexpr const char* kFormat = "fastgan-generator";  // fastgan/export.py: PACKAGE_FORMAT
constexpr int kVersion = 1;                           // fastgan/export.py: PACKAGE_VERSION
constexpr int kCell = 32, kPad = 2;                   // fastgan/train/plots.py: image_grid

const char* kUsage =
    "usage: fastgan-sample --package GEN.pt2 --out FILE [--cond COND] [--n N] [--seed SEED] [--device DEVICE]\n"
    "\n"
    "Generate samples from a generator exported with `fastgan export`.\n"
    "  --package  the .pt2 package\n"
    "  --out      a .png grid (image models) or a .npy float32 array [N, ...] (any model)\n"
    "  --cond     a class label (number or name), a user id, or attributes: comma-separated\n"
    "             numbers or name=value pairs (unnamed attributes are 0)\n"
    "  --n        number of samples (default 16)\n"
    "  --seed     random seed (default 0); the same seed gives `fastgan sample`'s noise\n"
    "  --device   cpu, cuda or cuda:N (default: the device the package was compiled for)\n";

// Bad input: reported in one line as "fastgan-sample: error: ...", exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string in_quotes(const std::string& text) { return "'" + text + "'"; }

std::string trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t"), end = text.find_last_not_of(" \t");
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream stream(text);
  while (std::getline(stream, part, sep)) parts.push_back(part);
  return parts;
}

std::optional<long long> to_int(const std::string& text) {
  try {
    size_t used = 0;
    long long value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::optional<double> to_float(const std::string& text) {
  try {
    size_t used = 0;
    double value = std::stod(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// ------------------------------------------------------------------ arguments
struct Options {
  std::string package, out;
  std::optional<std::string> cond, device;
  int64_t n = 16;
  uint64_t seed = 0;
};

Options parse_args(int argc, char** argv) {
  Options options;
  std::map<std::string, std::string> given;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    static const std::vector<std::string> known = {"--package", "--out", "--cond", "--n", "--seed", "--device"};
    if (std::find(known.begin(), known.end(), arg) == known.end())
      throw UsageError("unrecognized argument: " + arg + " (see --help)");
    if (i + 1 >= argc) throw UsageError("argument " + arg + ": expected one value");
    given[arg] = argv[++i];
  }
  for (const char* required : {"--package", "--out"})
    if (!given.count(required)) throw UsageError(std::string("the following arguments are required: ") + required);
  options.package = given["--package"];
  options.out = given["--out"];
  if (given.count("--cond")) options.cond = given["--cond"];
  if (given.count("--device")) options.device = given["--device"];
  if (given.count("--n")) {
    auto n = to_int(given["--n"]);
    if (!n || *n < 1) throw UsageError("argument --n: must be a positive integer, got " + in_quotes(given["--n"]));
    options.n = *n;
  }
  if (given.count("--seed")) {
    const std::string& text = given["--seed"];
    bool digits = !text.empty() && text.size() <= 20 && text.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || (text.size() == 20 && text > "18446744073709551615"))
      throw UsageError("argument --seed: must be an integer in [0, 2^64), got " + in_quotes(text));
    options.seed = std::stoull(text);
  }
  if (!ends_with(options.out, ".png") && !ends_with(options.out, ".npy"))
    throw UsageError("argument --out: must be a .png or .npy file, got " + in_quotes(options.out));
  return options;
}

// ------------------------------------------------------------------ the package
struct PackageInfo {
  int64_t latent_dim = 0, cond_size = 0;
  std::string cond_kind;
  std::vector<std::string> cond_names;
  std::vector<int64_t> sample_shape;  // one sample: [C, H, W] or [F]
  c10::DeviceType device_type = c10::kCPU;
};

PackageInfo read_package(const std::string& path) {
  std::string bad = "argument --package: " + in_quotes(path);
  if (!std::filesystem::exists(path)) throw UsageError(bad + " does not exist");
  if (!std::filesystem::is_regular_file(path)) throw UsageError(bad + " is not a file");
  std::unordered_map<std::string, std::string> meta;
  try {
    meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  } catch (const std::exception& error) {
    throw UsageError(bad + " is not an AOTInductor package (" + first_line(error.what()) + ")");
  }
  if (meta["fastgan.format"] != kFormat)
    throw UsageError(bad + " is an AOTInductor package but not a fastgan generator (write one with `fastgan export`)");
  if (meta["fastgan.version"] != std::to_string(kVersion))
    throw UsageError(bad + " has fastgan package version " + in_quotes(meta["fastgan.version"]) +
                     "; this fastgan-sample reads version " + std::to_string(kVersion) + " (export it again)");
  PackageInfo info;
  auto number = [&](const char* key) {
    auto value = to_int(meta[key]);
    if (!value || *value < 0) throw UsageError(bad + " has a broken " + key + " entry " + in_quotes(meta[key]));
    return *value;
  };
  info.latent_dim = number("fastgan.latent_dim");
  info.cond_size = number("fastgan.cond_size");
  info.cond_kind = meta["fastgan.cond_kind"];
  if (info.cond_kind != "none" && info.cond_kind != "label" && info.cond_kind != "attributes" && info.cond_kind != "user")
    throw UsageError(bad + " has an unknown condition kind " + in_quotes(info.cond_kind));
  if (!meta["fastgan.cond_names"].empty()) info.cond_names = split(meta["fastgan.cond_names"], '\n');
  for (const auto& dim : split(meta["fastgan.sample_shape"], ',')) {
    auto value = to_int(dim);
    if (!value || *value < 1) throw UsageError(bad + " has a broken fastgan.sample_shape entry");
    info.sample_shape.push_back(*value);
  }
  if (info.sample_shape.empty()) throw UsageError(bad + " has no fastgan.sample_shape entry");
  const std::string& device = meta["AOTI_DEVICE_KEY"];
  if (device == "cuda")
    info.device_type = c10::kCUDA;
  else if (device != "cpu")
    throw UsageError(bad + " was compiled for device " + in_quotes(device) + "; fastgan-sample runs cpu and cuda packages");
  return info;
}

c10::Device choose_device(const std::optional<std::string>& text, const PackageInfo& info) {
  std::string compiled = info.device_type == c10::kCUDA ? "cuda" : "cpu";
  c10::Device device(info.device_type, info.device_type == c10::kCUDA ? 0 : -1);
  if (text) {
    try {
      device = c10::Device(*text);
    } catch (const std::exception&) {
      throw UsageError("argument --device: must be cpu, cuda or cuda:N, got " + in_quotes(*text));
    }
    if (device.type() != info.device_type)
      throw UsageError("argument --device: " + in_quotes(*text) + " but the package was compiled for " + compiled +
                       " (export it again with `fastgan export --device " + (compiled == "cpu" ? "cuda" : "cpu") + "`)");
  }
  if (device.is_cuda() && !at::hasCUDA())
    throw UsageError("argument --package: the package was compiled for cuda, but this machine (or this libtorch) has no CUDA device");
  return device;
}

// ------------------------------------------------------------------ the condition
// The rules and messages of `fastgan sample --cond` (fastgan/cli/sample.py: parse_condition).
std::optional<at::Tensor> parse_condition(const std::optional<std::string>& text, const PackageInfo& info, int64_t n) {
  const std::string& kind = info.cond_kind;
  const int64_t size = info.cond_size;
  const auto& names = info.cond_names;
  if (kind == "none") {
    if (text) throw UsageError("argument --cond: this model is unconditional; leave --cond out");
    return std::nullopt;
  }
  if (!text) {
    std::string what = kind == "label" ? "classes" : kind == "user" ? "users" : "attributes";
    throw UsageError("argument --cond: this model is conditioned on a " + kind + " (" + std::to_string(size) + " " +
                     what + "); give --cond");
  }
  std::string bad = "argument --cond: " + in_quotes(*text);
  if (kind == "label" || kind == "user") {
    auto named = std::find(names.begin(), names.end(), *text);
    int64_t value;
    if (kind == "label" && named != names.end()) {
      value = named - names.begin();
    } else {
      auto parsed = to_int(*text);
      if (!parsed) throw UsageError(bad + " is not a " + kind + " id (an integer in [0, " + std::to_string(size) + "))");
      if (*parsed < 0 || *parsed >= size)
        throw UsageError(bad + " is out of range: the model knows " + kind + " ids 0.." + std::to_string(size - 1));
      value = *parsed;
    }
    return at::full({n}, value, at::kLong);
  }
  std::vector<std::string> parts;
  for (const auto& part : split(*text, ','))
    if (!trim(part).empty()) parts.push_back(trim(part));
  auto number = [&](const std::string& raw) {
    auto value = to_float(trim(raw));
    if (!value) throw UsageError(bad + ": " + in_quotes(trim(raw)) + " is not a number");
    if (!std::isfinite(*value)) throw UsageError(bad + ": " + in_quotes(trim(raw)) + " is not finite");
    return static_cast<float>(*value);
  };
  std::vector<float> values(size, 0.0f);
  bool all_named = !parts.empty() &&
                   std::all_of(parts.begin(), parts.end(), [](const std::string& p) { return p.find('=') != std::string::npos; });
  if (all_named) {
    for (const auto& part : parts) {
      std::string name = trim(part.substr(0, part.find('=')));
      auto found = std::find(names.begin(), names.end(), name);
      if (found == names.end()) {
        std::string known;
        for (const auto& each : names) known += (known.empty() ? "" : ", ") + each;
        throw UsageError(bad + ": unknown attribute " + in_quotes(name) + "; the model's attributes are " +
                         (known.empty() ? "unnamed" : known));
      }
      values[found - names.begin()] = number(part.substr(part.find('=') + 1));
    }
  } else {
    if (static_cast<int64_t>(parts.size()) != size)
      throw UsageError(bad + " has " + std::to_string(parts.size()) + " value(s); the model takes " +
                       std::to_string(size) + " attributes");
    for (size_t i = 0; i < parts.size(); ++i) values[i] = number(parts[i]);
  }
  return at::tensor(values, at::kFloat).unsqueeze(0).expand({n, size}).contiguous();
}

// ------------------------------------------------------------------ output
// The grid of `fastgan sample`: ceil(sqrt(n)) columns, 2-pixel white gaps, small images
// enlarged (nearest neighbour) to about 32 pixels, blank cells white.
void write_grid(const std::string& path, const at::Tensor& samples) {
  const int64_t n = samples.size(0), channels = samples.size(1), h = samples.size(2), w = samples.size(3);
  int64_t columns = 1;
  while (columns * columns < n) ++columns;
  const int64_t rows = (n + columns - 1) / columns;
  const int64_t scale = std::max<int64_t>(1, kCell / std::max(h, w));
  const int64_t cell_h = h * scale, cell_w = w * scale;
  const int64_t width = kPad + columns * (cell_w + kPad), height = kPad + rows * (cell_h + kPad);
  std::vector<uint8_t> canvas(width * height * channels, 255);
  auto values = samples.accessor<float, 4>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = kPad + (i / columns) * (cell_h + kPad), left = kPad + (i % columns) * (cell_w + kPad);
    for (int64_t y = 0; y < cell_h; ++y)
      for (int64_t x = 0; x < cell_w; ++x)
        for (int64_t c = 0; c < channels; ++c) {
          // As plots.image_grid: float32 arithmetic, rounding half to even (torch.round).
          float v = (std::clamp(values[i][c][y / scale][x / scale], -1.0f, 1.0f) + 1.0f) * 127.5f;
          canvas[((top + y) * width + left + x) * channels + c] = static_cast<uint8_t>(std::nearbyint(v));
        }
  }
  fastgan::write_png(path, static_cast<int>(width), static_cast<int>(height), static_cast<int>(channels), canvas);
}

int run(const Options& options) {
  const PackageInfo info = read_package(options.package);
  const c10::Device device = choose_device(options.device, info);
  const bool png = ends_with(options.out, ".png");
  const bool image = info.sample_shape.size() == 3 && (info.sample_shape[0] == 1 || info.sample_shape[0] == 3);
  if (png && !image) throw UsageError("argument --out: this model makes vectors, not images; write a .npy file");
  auto folder = std::filesystem::path(options.out).parent_path();
  if (!folder.empty() && !std::filesystem::is_directory(folder))
    throw UsageError("argument --out: the folder " + in_quotes(folder.string()) + " does not exist");
  std::optional<at::Tensor> condition = parse_condition(options.cond, info, options.n);

  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  std::vector<at::Tensor> inputs = {at::randn({options.n, info.latent_dim}, generator, at::kFloat).to(device)};
  if (condition) inputs.push_back(condition->to(device));

  torch::inductor::AOTIModelPackageLoader loader(options.package, "model", false, 1,
                                                 device.is_cuda() ? device.index() : -1);
  std::vector<at::Tensor> outputs = loader.run(inputs);
  at::Tensor samples = outputs.at(0).to(at::kCPU, at::kFloat).contiguous();
  std::vector<int64_t> expected = {options.n};
  expected.insert(expected.end(), info.sample_shape.begin(), info.sample_shape.end());
  if (samples.sizes().vec() != expected) throw std::runtime_error("the package returned samples of an unexpected shape");

  if (png)
    write_grid(options.out, samples);
  else
    fastgan::write_npy(options.out, samples.sizes().vec(), samples.data_ptr<float>());
  std::cout << "fastgan-sample: wrote " << options.n << " sample(s) to " << options.out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& error) {
    std::cerr << kProgram << ": error: " << error.what() << "\n";
    return 2;
  } catch (const c10::Error& error) {
    std::cerr << kProgram << ": error: " << first_line(error.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << kProgram << ": error: " << first_line(error.what()) << "\n";
    return 1;
  }
}
