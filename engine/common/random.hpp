// Random bytes from the kernel (getrandom), for keys, nonces and names.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace bnf {

void fill_random(std::span<uint8_t> out);

template <size_t N>
std::array<uint8_t, N> random_array() {
  std::array<uint8_t, N> a{};
  fill_random(a);
  return a;
}

}  // namespace bnf
