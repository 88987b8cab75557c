// Writing samples to disk without any library beyond the C++ standard one: an 8-bit
// PNG (grey or RGB) and a float32 .npy array. Both throw std::runtime_error naming the
// path when the file cannot be written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastgan {

// pixels: height rows of width * channels bytes (channels 1: grey, 3: RGB).
void write_png(const std::string& path, int width, int height, int channels, const std::vector<uint8_t>& pixels);

// A C-ordered little-endian float32 array of the given shape (NumPy format 1.0).
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace fastgan
