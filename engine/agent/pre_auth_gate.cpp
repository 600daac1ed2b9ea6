#include "agent/pre_auth_gate.hpp"

#include <fmt/format.h>

namespace bnf {

PreAuthGate::Ticket& PreAuthGate::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    release();
    gate_ = o.gate_;
    source_ = std::move(o.source_);
    o.gate_ = nullptr;
  }
  return *this;
}

void PreAuthGate::Ticket::release() noexcept {
  if (gate_ != nullptr) gate_->leave(source_);
  gate_ = nullptr;
}

PreAuthGate::Admission PreAuthGate::admit(const std::string& source) {
  std::lock_guard lk(mu_);
  if (total_ >= caps_.total)
    return {std::nullopt, fmt::format("{} connections are waiting to authenticate already (the cap)", total_)};
  size_t& mine = by_source_[source];
  if (mine >= caps_.per_source)
    return {std::nullopt,
            fmt::format("{} connections from {} are waiting to authenticate already (the cap)", mine, source)};
  ++mine;
  ++total_;
  return {Ticket(this, source), ""};
}

void PreAuthGate::leave(const std::string& source) noexcept {
  std::lock_guard lk(mu_);
  auto it = by_source_.find(source);
  if (it == by_source_.end()) return;
  if (--it->second == 0) by_source_.erase(it);
  --total_;
}

size_t PreAuthGate::waiting() const {
  std::lock_guard lk(mu_);
  return total_;
}

size_t PreAuthGate::waiting_from(const std::string& source) const {
  std::lock_guard lk(mu_);
  auto it = by_source_.find(source);
  return it == by_source_.end() ? 0 : it->second;
}

std::string source_address(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  return colon == std::string::npos ? host_port : host_port.substr(0, colon);
}

}  // namespace bnf
