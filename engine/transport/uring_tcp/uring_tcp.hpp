// uring-tcp: TCP sockets driven through io_uring. Sends are gathered into
// batches submitted as one SENDMSG (or SENDMSG_ZC when the batch carries enough
// registered bytes); receives land with RECV / RECVMSG at caller addresses.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "transport/transport.hpp"

namespace bnf::transport {

struct UringTcpOptions {
  size_t batch_bytes = 256U << 10;         // submit a send batch once this much is queued
  size_t zero_copy_min_bytes = 64U << 10;  // use SEND_ZC when a batch has this many registered bytes
  // auto: SEND_ZC except to a loopback peer, where the kernel copies anyway and
  // the completion waits for the receiver to read (it only adds latency there).
  // The kernel holds a zero-copy send's bytes until the peer has taken them
  // (or the connection is gone): a post waiting for those completions waits
  // on after shutdown(), until the peer reads or closes.
  enum class ZeroCopy { automatic, on, off } zero_copy = ZeroCopy::automatic;
  int connect_timeout_ms = 5000;
  unsigned peer_timeout_ms = 30000;  // a silent peer is declared gone after this long
};

std::unique_ptr<Transport> make_uring_tcp_transport(UringTcpOptions opts = {});

// A zero-copy mode by its name: "auto", "on" or "off" (--zero-copy checks
// its value with this); Errc::invalid_argument names an unknown one.
Result<UringTcpOptions::ZeroCopy> parse_zero_copy(std::string_view s);

}  // namespace bnf::transport
