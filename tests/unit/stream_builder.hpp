// Synthetic QEMU 7.2 migration streams for tests: records written byte by
// byte (big-endian, as QEMU writes them). See docs/qemu-stream.md.
#pragma once

#include <cstdint>
#include <string>

namespace bnf::test {

struct Builder {
  std::string s;
  Builder& u8(uint8_t v) {
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Builder& be32(uint32_t v) {
    for (int i = 3; i >= 0; --i) u8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Builder& be64(uint64_t v) {
    for (int i = 7; i >= 0; --i) u8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Builder& str8(const std::string& t) {
    u8(static_cast<uint8_t>(t.size()));
    s += t;
    return *this;
  }
  Builder& header() { return be32(0x5145564d).be32(3).u8(0x07).be32(4).raw("pc-x"); }
  Builder& raw(const std::string& t) {
    s += t;
    return *this;
  }
  Builder& page(char fill) {
    s += std::string(4096, fill);
    return *this;
  }
  Builder& ram_start(uint64_t main_size) {
    u8(0x01).be32(2).str8("ram").be32(0).be32(4);
    be64((main_size + 4096) | 0x04).str8("ram0").be64(main_size).str8("pc.rom").be64(4096);
    return *this;
  }
  Builder& footer() { return u8(0x7e).be32(2); }
  Builder& device_tail() { return u8(0x04).be32(3).str8("dev").be32(0).be32(1).raw("DEVICE-STATE").u8(0x00); }
};

}  // namespace bnf::test
