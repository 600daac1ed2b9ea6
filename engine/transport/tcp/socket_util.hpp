// Plain socket setup for uring-tcp: resolving, listening, connecting with a timeout.
#pragma once

#include <string>

#include "common/status.hpp"
#include "common/unique_fd.hpp"
#include "common/uri.hpp"

namespace bnf::transport {

Result<UniqueFd> tcp_listen(const Endpoint& ep, uint16_t* bound_port);
Result<UniqueFd> tcp_connect(const Endpoint& ep, int timeout_ms, unsigned peer_timeout_ms);
// Keepalive and TCP_USER_TIMEOUT so that a vanished peer is found within
// `peer_timeout_ms`; TCP_NODELAY.
void tune_socket(int fd, unsigned peer_timeout_ms);
// A blocking read() of `fd` that gets nothing for `timeout_ms` fails with
// EAGAIN (SO_RCVTIMEO; io_uring's receives do not heed it: ReceiveLimits).
void limit_socket_receives(int fd, unsigned timeout_ms);
std::string peer_name(int fd);
bool peer_is_loopback(int fd);

}  // namespace bnf::transport
