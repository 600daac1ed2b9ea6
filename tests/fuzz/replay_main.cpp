// Runs the fuzz target over every file of a corpus directory (a plain test
// without libFuzzer), plus a set of mutations of each file.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  size_t inputs = 0;
  for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream f(e.path(), std::ios::binary);
    std::vector<uint8_t> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
    for (size_t i = 0; i < buf.size(); ++i)  // every single-byte flip
      for (uint8_t bit : {0x01, 0x80, 0xff}) {
        buf[i] ^= bit;
        LLVMFuzzerTestOneInput(buf.data(), buf.size());
        buf[i] ^= bit;
        ++inputs;
      }
  }
  std::printf("%zu inputs replayed\n", inputs);
  return inputs > 0 ? 0 : 1;
}
