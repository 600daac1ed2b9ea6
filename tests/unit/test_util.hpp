// Helpers shared by the unit tests: temporary directories, test images, a
// connected pair of a transport's connections.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "transport/transport.hpp"

namespace bnf::test {

// Both ends of one connection over `t` on 127.0.0.1 (a free port).
struct ConnectedPair {
  std::unique_ptr<transport::Connection> client;
  std::unique_ptr<transport::Connection> server;
};
ConnectedPair connect_pair(transport::Transport& t);

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

// Whether qemu-system-x86_64 is installed, and the command line of a paused
// QEMU with no devices, `memory_mib` of RAM and QMP on `qmp_socket`.
bool have_qemu();
std::vector<std::string> bare_qemu(const std::string& qmp_socket, unsigned memory_mib = 32);

}  // namespace bnf::test
