// Helpers shared by the unit tests: temporary directories and test images.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnf::test {

// A fresh directory under /dev/shm (or TMPDIR), removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Pages of pseudo-random bytes; every `zero_every`-th page is zero (0: none).
std::vector<std::byte> random_image(uint64_t pages, uint64_t seed, uint64_t zero_every = 0);
void fill_page(std::byte* page, uint64_t seed);
std::vector<std::byte> read_whole(const std::string& path);

}  // namespace bnf::test
