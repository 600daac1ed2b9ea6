// Status and Result: the one way errors cross a boundary in bnf.
// A Status carries a category (for programs) and a one-line message naming the
// cause (for people). Context is prepended as the error travels up.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace bnf {

enum class Errc {
  ok = 0,
  invalid_argument,  // bad name, bad URI, bad flag combination
  io,                // a system call failed
  protocol,          // peer sent something that does not follow the protocol
  corrupt,           // checksum or digest mismatch
  not_found,
  busy,         // resource held by someone else (snapshot being written)
  mismatch,     // sizes/lineages that must agree do not
  unreachable,  // peer cannot be reached
  no_space,     // disk or tmpfs full
  version,      // protocol version not supported
  cancelled,    // shut down or aborted on purpose
  internal,
  connection_lost,  // an established connection broke: peer closed, reset or went silent
  denied,           // the peer did not prove it holds this host's peer key; a local client may not use the daemon
  base_changed,     // a retained snapshot no longer holds what its digest table says: the trip must be full
  // Numbers travel in ERROR frames: add new codes here, at the end.
};
inline constexpr Errc kLastErrc = Errc::base_changed;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  [[nodiscard]] bool is_ok() const noexcept { return code_ == Errc::ok; }
  explicit operator bool() const noexcept { return is_ok(); }
  [[nodiscard]] Errc code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

  // A failure the peer reported (its ERROR frame): `reason` is its own text,
  // shown after `prefix`. Decisions look at the code and at from_peer(),
  // never at the words.
  static Status from_peer(Errc code, std::string_view reason, std::string_view prefix = "peer: ") {
    Status s(code, std::string(prefix) + std::string(reason));
    s.reason_at_ = prefix.size();
    return s;
  }
  [[nodiscard]] bool from_peer() const noexcept { return reason_at_ != kHere; }
  // The peer's own words (from_peer()), else the whole message.
  [[nodiscard]] std::string_view peer_reason() const noexcept {
    return std::string_view(message_).substr(from_peer() ? reason_at_ : 0);
  }

  // "context: message" — keeps the error on one line.
  [[nodiscard]] Status context(std::string_view what) const {
    if (is_ok()) return *this;
    Status s(code_, std::string(what) + ": " + message_);
    if (from_peer()) s.reason_at_ = reason_at_ + what.size() + 2;
    return s;
  }

 private:
  static constexpr size_t kHere = static_cast<size_t>(-1);
  Errc code_ = Errc::ok;
  std::string message_;
  size_t reason_at_ = kHere;  // where the peer's reason starts in message_; kHere: the failure is this host's
};

// errno's text, thread-safe (strerror_r; strerror may share a buffer between threads).
std::string errno_text(int err);
// Builds a Status from errno: "what: strerror(errno)", mapping ENOSPC etc.
Status errno_status(std::string_view what, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status error) : v_(std::move(error)) { assert(!std::get<Status>(v_).is_ok()); }  // NOLINT

  [[nodiscard]] bool is_ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return is_ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  [[nodiscard]] Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace bnf

// Early-return helpers keep call sites flat.
#define BNF_TRY(expr)                     \
  do {                                    \
    ::bnf::Status bnf_st_ = (expr);       \
    if (!bnf_st_.is_ok()) return bnf_st_; \
  } while (0)

#define BNF_CONCAT_INNER(a, b) a##b
#define BNF_CONCAT(a, b) BNF_CONCAT_INNER(a, b)
#define BNF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.is_ok()) return tmp.status();          \
  lhs = std::move(tmp).value()
#define BNF_ASSIGN_OR_RETURN(lhs, expr) BNF_ASSIGN_OR_RETURN_IMPL(BNF_CONCAT(bnf_res_, __LINE__), lhs, expr)
