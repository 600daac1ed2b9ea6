// uring-tcp: TCP sockets driven through io_uring. Sends are gathered into
// batches submitted as one SENDMSG (or SENDMSG_ZC when the batch carries enough
// registered bytes); receives land with RECV / RECVMSG at caller addresses.
#pragma once

#include <memory>

#include "transport/transport.hpp"

namespace bnf::transport {

struct UringTcpOptions {
  size_t batch_bytes = 1U << 20;         // submit a send batch once this much is queued
  size_t zero_copy_min_bytes = 64U << 10;  // use SEND_ZC when a batch has this many registered bytes
  bool zero_copy = true;                  // set false to compare against plain sends
  int connect_timeout_ms = 5000;
};

std::unique_ptr<Transport> make_uring_tcp_transport(UringTcpOptions opts = {});

}  // namespace bnf::transport
