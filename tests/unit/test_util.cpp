#include "test_util.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

namespace bnf::test {

TempDir::TempDir() {
  const char* base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
  std::string tmpl = std::string(base) + "/bnf-test-XXXXXX";
  char* p = ::mkdtemp(tmpl.data());
  path_ = p != nullptr ? p : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

void fill_page(std::byte* page, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto* w = reinterpret_cast<uint64_t*>(page);
  for (int i = 0; i < 512; ++i) w[i] = rng();
}

std::vector<std::byte> random_image(uint64_t pages, uint64_t seed, uint64_t zero_every) {
  std::vector<std::byte> img(pages * 4096);
  for (uint64_t p = 0; p < pages; ++p)
    if (zero_every == 0 || p % zero_every != 0) fill_page(img.data() + p * 4096, seed * 1000003 + p);
  return img;
}

std::vector<std::byte> read_whole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> v((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(v.size());
  std::memcpy(out.data(), v.data(), v.size());
  return out;
}

ConnectedPair connect_pair(transport::Transport& t) {
  auto l = t.listen(*parse_endpoint("bnf+tcp:127.0.0.1:0"));
  EXPECT_TRUE(l.is_ok());
  ConnectedPair p;
  std::thread acc([&] {
    auto c = (*l)->accept();
    EXPECT_TRUE(c.is_ok());
    p.server = std::move(c).value();
  });
  auto c = t.connect((*l)->local());
  EXPECT_TRUE(c.is_ok()) << c.status().message();
  acc.join();
  p.client = std::move(c).value();
  return p;
}

bool have_qemu() { return std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0; }

std::vector<std::string> bare_qemu(const std::string& qmp_socket, unsigned memory_mib) {
  return {"qemu-system-x86_64",
          "-accel",
          "tcg",
          "-m",
          std::to_string(memory_mib) + "M",
          "-display",
          "none",
          "-nodefaults",
          "-S",
          "-qmp",
          "unix:" + qmp_socket + ",server=on,wait=off"};
}

}  // namespace bnf::test
