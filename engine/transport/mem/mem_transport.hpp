// mem: an in-process transport for tests of protocol logic. Endpoints are
// names ("bnf+mem:NAME") inside one MemNetwork object that the test owns.
// Faults are injected per connection on the sending side, by byte position,
// so the real engine sees exactly what a broken network would show it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "transport/transport.hpp"

namespace bnf::transport {

struct FaultPlan {
  std::optional<uint64_t> cut_after_bytes;  // the connection dies after this many bytes sent
  std::optional<uint64_t> corrupt_at_byte;  // this byte is flipped in flight
  std::optional<uint64_t> drop_from_byte;   // bytes from here ... are lost (the stream goes silent)
  uint64_t drop_bytes = 0;                  //   ... this many
  uint32_t delay_us_per_post = 0;           // latency added to every post()
};

class MemNetwork {
 public:
  MemNetwork();
  ~MemNetwork();
  MemNetwork(const MemNetwork&) = delete;
  MemNetwork& operator=(const MemNetwork&) = delete;

  // The transport that connects/listens inside this network.
  [[nodiscard]] std::unique_ptr<Transport> transport();
  // Faults for the n-th (0-based) connection opened by connect(), applied to what it sends.
  void set_client_faults(unsigned connection_index, FaultPlan plan);
  // Faults for the n-th connection accepted by a listener, applied to what it sends.
  void set_server_faults(unsigned connection_index, FaultPlan plan);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace bnf::transport
