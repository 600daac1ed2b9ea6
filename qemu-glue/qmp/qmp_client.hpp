// QMP client: the daemon's handle on a QEMU process it owns. Commands are
// synchronous; asynchronous events (MIGRATION, STOP, RESUME, ...) seen while
// waiting are queued and can be waited for by name.
#pragma once

#include <chrono>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf::qemu {

class QmpClient {
 public:
  // Connects to a QMP UNIX socket, reads the greeting, negotiates capabilities.
  static Result<QmpClient> connect(const std::string& socket_path, std::chrono::milliseconds timeout);

  // Runs one command; a QMP error becomes a Status carrying QEMU's description.
  Result<nlohmann::json> execute(const std::string& command, const nlohmann::json& args = nullptr);
  // The same, passing descriptor `fd` with it (for getfd / add-fd).
  Result<nlohmann::json> execute_with_fd(const std::string& command, const nlohmann::json& args, int fd);
  // The same, unless event `event` is queued before the answer comes: then
  // nothing (the event stays queued, the answer is skipped when it comes). For
  // a poll that must see the event at once although QEMU may hold the answer
  // back (a migration's final pass holds the lock QMP commands need).
  Result<std::optional<nlohmann::json>> execute_unless_event(const std::string& command, const nlohmann::json& args,
                                                             const std::string& event);
  // Sends a command without waiting for its answer (which later calls skip): for
  // a caller that must not block, e.g. one draining QEMU's migration stream
  // while QEMU's migration thread, holding the big lock that QMP needs, writes it.
  Status send(const std::string& command, const nlohmann::json& args = nullptr);
  // Waits for an event named `name` (already queued or arriving), up to `timeout`.
  Result<nlohmann::json> wait_event(const std::string& name, std::chrono::milliseconds timeout);
  // On a QEMU started with -incoming: waits until it has loaded the whole stream
  // and runs; returns when it resumed (wall clock, seconds since the epoch).
  Result<double> wait_incoming_loaded(std::chrono::milliseconds timeout);
  [[nodiscard]] const std::string& qemu_version() const { return version_; }
  // An event's own timestamp (wall clock, seconds since the epoch).
  static double event_time(const nlohmann::json& event);
  // Now, on the clock of event_time.
  static double wall_now();

 private:
  explicit QmpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<nlohmann::json> read_message(std::chrono::milliseconds timeout);
  Status post(const std::string& command, const nlohmann::json& args, const nlohmann::json& id, int pass_fd = -1);
  // The answer to command `id`; events are queued, other answers skipped.
  Result<std::optional<nlohmann::json>> answer(uint64_t id, const std::string& command, const std::string& event);
  [[nodiscard]] bool queued(const std::string& event) const;
  UniqueFd fd_;
  uint64_t last_id_ = 0;
  std::string buffer_;
  std::deque<nlohmann::json> events_;
  std::string version_;
};

}  // namespace bnf::qemu
