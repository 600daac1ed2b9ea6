// A direct trip's QEMU stream inside the secure channel. QEMU speaks on one
// end of a local socket pair; the tunnel carries what it writes there as
// STREAM frames over the bnf connection, and writes what comes back into the
// pair: on the source, QEMU's stream goes out and its return path comes in;
// on the destination, the other way round. So no byte reaches a QEMU, or
// leaves one for the network, outside the channel's authenticated records.
// An empty STREAM frame says the writer's side closed (its EOF).
#pragma once

#include <memory>
#include <thread>

#include "common/status.hpp"
#include "common/unique_fd.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

class StreamTunnel {
 public:
  // Starts relaying between `c` (a connection with a socket to wait on) and a
  // new socket pair; take_local_end() gives the pair's other end.
  static Result<std::unique_ptr<StreamTunnel>> start(std::unique_ptr<transport::Connection> c);
  // Or over a connection someone else owns, which must outlive the tunnel.
  static Result<std::unique_ptr<StreamTunnel>> start(transport::Connection& c);
  ~StreamTunnel();
  StreamTunnel(const StreamTunnel&) = delete;
  StreamTunnel& operator=(const StreamTunnel&) = delete;

  // The end for the local reader/writer (a QEMU, the stream's codec). Taking
  // it hands it over: once every copy is closed, the tunnel sends EOF.
  [[nodiscard]] UniqueFd take_local_end() { return std::move(local_end_); }
  // Waits until both sides closed (or the relay failed); its outcome.
  Status wait();

 private:
  StreamTunnel(std::unique_ptr<transport::Connection> owned, transport::Connection& c)
      : owned_(std::move(owned)), c_(c) {}
  static Result<std::unique_ptr<StreamTunnel>> launch(std::unique_ptr<StreamTunnel> t);
  Status relay();

  std::unique_ptr<transport::Connection> owned_;
  transport::Connection& c_;
  UniqueFd tunnel_end_;
  UniqueFd local_end_;
  std::thread thread_;
  Status outcome_;
};

}  // namespace bnf::qemu
