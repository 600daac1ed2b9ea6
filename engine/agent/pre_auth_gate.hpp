// Admission of connections that have not proven the peer key yet: at most so
// many per source address and so many in all, so that nobody without the key
// can take more than a bounded share of the daemon's threads and memory.
// Authenticated connections hold no place here: they are never refused by it.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace bnf {

class PreAuthGate {
 public:
  struct Caps {
    size_t per_source = 32;
    size_t total = 256;
  };

  // A connection's place until it authenticated (release) or closed.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept : gate_(o.gate_), source_(std::move(o.source_)) { o.gate_ = nullptr; }
    Ticket& operator=(Ticket&& o) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { release(); }
    void release() noexcept;

   private:
    friend class PreAuthGate;
    Ticket(PreAuthGate* gate, std::string source) : gate_(gate), source_(std::move(source)) {}
    PreAuthGate* gate_ = nullptr;
    std::string source_;
  };

  explicit PreAuthGate(Caps caps) : caps_(caps) {}

  // A place for one more connection from `source` (an address), or why not.
  struct Admission {
    std::optional<Ticket> ticket;
    std::string refused_because;  // set when ticket is not
  };
  [[nodiscard]] Admission admit(const std::string& source);
  [[nodiscard]] size_t waiting() const;
  [[nodiscard]] size_t waiting_from(const std::string& source) const;

 private:
  void leave(const std::string& source) noexcept;

  const Caps caps_;
  mutable std::mutex mu_;
  std::map<std::string, size_t> by_source_;
  size_t total_ = 0;
};

// The address part of a peer name "host:port" (IPv6 hosts come without brackets).
[[nodiscard]] std::string source_address(const std::string& host_port);

}  // namespace bnf
