#include "agent/control_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/files.hpp"
#include "common/unix_socket.hpp"
#include "protocol/control.hpp"

namespace bnf {

using nlohmann::json;

namespace {
Result<std::string> read_line(int fd) {
  std::string line;
  char c = 0;
  while (true) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("control socket read", errno);
    if (n == 0)
      return line.empty() ? Result<std::string>(Status(
                                Errc::io, "the daemon closed the control connection without answering (did it exit?)"))
                          : line;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

Status write_line(int fd, const std::string& s) { return send_all(fd, s + "\n", "control socket write"); }
// An answer as one line; text that is not UTF-8 (a path, a peer's words) is
// replaced, never an exception.
std::string one_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

ControlServer::ControlServer(std::string path, ControlAccess access, ControlHandler handler, const Logger& log)
    : path_(std::move(path)), access_(std::move(access)), handler_(std::move(handler)), log_(log) {}

ControlServer::~ControlServer() { stop(); }

Status ControlServer::start() {
  const SocketFileAccess file = access_.socket_file();
  BNF_ASSIGN_OR_RETURN(listen_fd_, unix_listen(path_, 16, file));
  thread_ = std::thread([this] { accept_loop(); });
  log_.info("control socket {} (mode {:04o}; whoever may use it has root access)", path_, file.mode);
  return Status::ok();
}

void ControlServer::stop() noexcept {
  if (stopping_.exchange(true)) return;
  if (listen_fd_.valid()) ::shutdown(listen_fd_.get(), SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  std::lock_guard lk(mu_);
  for (auto& t : clients_) t.join();
  clients_.clear();
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

void ControlServer::accept_loop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_ || errno == EINVAL) return;
      continue;
    }
    std::lock_guard lk(mu_);
    clients_.emplace_back([this, fd] { serve(fd); });
  }
}

// Nothing a client sends may end the daemon: a request the handler could not
// take (a library's throw, a refused allocation) is answered as an error.
json ControlServer::answer_request(int fd, const json& req) {
  try {
    auto want_progress = proto::optional_field<bool>(req, "progress", false);
    if (!want_progress.is_ok()) return {{"ok", false}, {"error", want_progress.status().message()}};
    ProgressFn progress = [](const json&) {};
    if (*want_progress) progress = [fd](const json& p) { (void)write_line(fd, one_line(json{{"progress", p}})); };
    auto r = handler_(req, progress);
    if (r.is_ok()) return {{"ok", true}, {"result", *r}};
    return {{"ok", false}, {"error", r.status().message()}};
  } catch (const std::exception& e) {
    log_.error("control request failed: internal error: {}", e.what());
    return {{"ok", false}, {"error", std::string("internal error: ") + e.what()}};
  }
}

void ControlServer::serve(int fd) {
  UniqueFd owned(fd);
  if (Status admitted = access_.admit(fd); !admitted.is_ok()) {
    log_.warn("{}", admitted.message());
    (void)write_line(fd, one_line(json{{"ok", false}, {"error", admitted.message()}}));
    return;
  }
  auto line = read_line(fd);
  if (!line.is_ok()) return;
  json req = json::parse(*line, nullptr, false);
  json answer;
  if (req.is_discarded() || !req.is_object()) {
    answer = {{"ok", false}, {"error", "control request is not a JSON object"}};
  } else {
    answer = answer_request(fd, req);
  }
  (void)write_line(fd, one_line(answer));
}

Result<json> control_call(const std::string& path, const json& request, const ProgressFn& on_progress) {
  auto fd = unix_connect(path, std::chrono::milliseconds(0));
  if (!fd.is_ok()) return fd.status().context("daemon control socket (is bnf daemon running?)");
  json req = request;
  if (on_progress) req["progress"] = true;
  // A refused client is answered before its request is read: the answer may
  // wait to be read although the request could not be written.
  const Status sent = write_line(fd->get(), req.dump());
  json r;
  do {
    auto line = read_line(fd->get());
    if (!line.is_ok()) return sent.is_ok() ? line.status() : sent;
    r = json::parse(*line, nullptr, false);
    if (r.is_discarded() || !r.is_object()) return Status(Errc::protocol, "daemon answered with malformed JSON");
    if (r.contains("progress") && on_progress) on_progress(r["progress"]);
  } while (r.contains("progress"));
  if (!r.value("ok", false)) return Status(Errc::io, r.value("error", std::string("daemon reported an error")));
  return r["result"];
}

}  // namespace bnf
