// Runs the fuzz target without libFuzzer, as a plain test: over every file of
// a corpus directory and over well-formed frames built here, each followed by
// every single-bit flip of it. `--write-seeds DIR` saves the built frames as a
// seed corpus for libFuzzer.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/crc32c.hpp"
#include "protocol/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> frame(bnf::proto::FrameType t, const std::vector<bnf::PageRun>& runs) {
  const std::string meta = bnf::proto::encode_runs(runs);
  bnf::proto::FrameHeader h;
  h.type = t;
  h.meta_len = static_cast<uint32_t>(meta.size());
  h.meta_crc = bnf::crc32c(meta.data(), meta.size());
  h.payload_len = bnf::pages_in(runs) * 4096;
  auto hb = bnf::proto::encode_header(h);
  std::vector<uint8_t> out(hb.size() + meta.size());
  std::memcpy(out.data(), hb.data(), hb.size());
  std::memcpy(out.data() + hb.size(), meta.data(), meta.size());
  return out;
}

std::vector<std::vector<uint8_t>> seeds() {
  using bnf::proto::FrameType;
  return {frame(FrameType::pages, {{0, 1}}), frame(FrameType::pages, {{3, 4}, {100, 28}, {1000, 24}}),
          frame(FrameType::zeros, {{512, 512}}), frame(FrameType::hello, {})};
}

size_t run_with_flips(std::vector<uint8_t> buf) {
  size_t n = 1;
  LLVMFuzzerTestOneInput(buf.data(), buf.size());
  for (size_t i = 0; i < buf.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      buf[i] ^= static_cast<uint8_t>(1U << bit);
      LLVMFuzzerTestOneInput(buf.data(), buf.size());
      buf[i] ^= static_cast<uint8_t>(1U << bit);
      ++n;
    }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-seeds") {
    int i = 0;
    for (const auto& s : seeds()) {
      std::ofstream f(std::string(argv[2]) + "/seed" + std::to_string(i++), std::ios::binary);
      f.write(reinterpret_cast<const char*>(s.data()), static_cast<std::streamsize>(s.size()));
    }
    return 0;
  }
  size_t inputs = 0;
  for (const auto& s : seeds()) inputs += run_with_flips(s);
  if (argc >= 2)
    for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
      std::ifstream f(e.path(), std::ios::binary);
      inputs += run_with_flips({std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()});
    }
  std::printf("%zu inputs replayed\n", inputs);
  return 0;
}
