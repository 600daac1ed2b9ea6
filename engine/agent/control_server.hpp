// The daemon's local control socket: one JSON request per line, one JSON answer
// per line ({"ok": true, "result": ...} or {"ok": false, "error": "..."}). A
// long operation asked with "progress": true sends {"progress": {...}} lines
// before its answer. A client ControlAccess refuses gets one error line.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "agent/control_access.hpp"
#include "common/log.hpp"
#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

// Reports how a long operation is going; a no-op unless the client asked.
using ProgressFn = std::function<void(const nlohmann::json& progress)>;
using ControlHandler = std::function<Result<nlohmann::json>(const nlohmann::json& request, const ProgressFn& progress)>;

class ControlServer {
 public:
  ControlServer(std::string path, ControlAccess access, ControlHandler handler, const Logger& log);
  ~ControlServer();
  Status start();
  void stop() noexcept;

 private:
  void accept_loop();
  void serve(int fd);
  [[nodiscard]] nlohmann::json answer_request(int fd, const nlohmann::json& req);
  std::string path_;
  ControlAccess access_;
  ControlHandler handler_;
  const Logger& log_;
  UniqueFd listen_fd_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::list<std::thread> clients_;
};

// Client side: sends one request, returns the result or the daemon's error;
// progress lines (when the request asks for them) go to `on_progress`.
Result<nlohmann::json> control_call(const std::string& path, const nlohmann::json& request,
                                    const ProgressFn& on_progress = nullptr);

}  // namespace bnf
