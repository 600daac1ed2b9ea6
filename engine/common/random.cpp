#include "common/random.hpp"

#include <sys/random.h>

namespace bnf {

void fill_random(std::span<uint8_t> out) {
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::getrandom(out.data() + got, out.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
}

}  // namespace bnf
