#include "qmp/qmp_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "common/files.hpp"
#include "common/unix_socket.hpp"

namespace bnf::qemu {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

Result<QmpClient> QmpClient::connect(const std::string& path, std::chrono::milliseconds timeout) {
  // QEMU creates the socket shortly after it starts: keep trying until `timeout`.
  auto fd = unix_connect(path, timeout);
  if (!fd.is_ok()) return fd.status().context("QMP socket");
  QmpClient c(std::move(fd).value());
  BNF_ASSIGN_OR_RETURN(json greeting, c.read_message(timeout));
  if (!greeting.contains("QMP")) return Status(Errc::protocol, "QMP: no greeting from " + path);
  const json& v = greeting["QMP"]["version"]["qemu"];
  c.version_ = std::to_string(v.value("major", 0)) + "." + std::to_string(v.value("minor", 0)) + "." +
               std::to_string(v.value("micro", 0));
  BNF_TRY(c.execute("qmp_capabilities").status());
  return c;
}

Result<json> QmpClient::read_message(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      json j = json::parse(buffer_.substr(0, nl), nullptr, false);
      buffer_.erase(0, nl + 1);
      if (j.is_discarded()) return Status(Errc::protocol, "QMP: malformed message");
      return j;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return Status(Errc::cancelled, "QMP: timed out waiting for QEMU");
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) return errno_status("QMP poll", errno);
    if ((p.revents & (POLLIN | POLLHUP)) == 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n == 0) return Status(Errc::io, "QMP: QEMU closed the connection (did it exit?)");
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("QMP read", errno);
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

namespace {
constexpr const char* kUnawaited = "unawaited";
}  // namespace

Status QmpClient::post(const std::string& command, const json& args, const json& id, int pass_fd) {
  json msg = {{"execute", command}, {"id", id}};
  if (!args.is_null()) msg["arguments"] = args;
  const std::string line = msg.dump() + "\n";
  if (pass_fd < 0) return send_all(fd_.get(), line, "QMP send " + command);
  // The descriptor rides on the command's first bytes (SCM_RIGHTS), as QEMU's getfd expects.
  iovec iov{const_cast<char*>(line.data()), line.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &pass_fd, sizeof pass_fd);
  const ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
  if (n < 0) return errno_status("QMP send " + command, errno);
  return send_all(fd_.get(), std::string_view(line).substr(static_cast<size_t>(n)), "QMP send " + command);
}

Status QmpClient::send(const std::string& command, const json& args) { return post(command, args, kUnawaited); }

bool QmpClient::queued(const std::string& event) const {
  for (const json& e : events_)
    if (e["event"] == event) return true;
  return false;
}

Result<std::optional<json>> QmpClient::answer(uint64_t id, const std::string& command, const std::string& event) {
  while (true) {
    if (!event.empty() && queued(event)) return std::optional<json>();
    BNF_ASSIGN_OR_RETURN(json r, read_message(std::chrono::seconds(60)));
    if (r.contains("event")) {
      events_.push_back(std::move(r));
      continue;
    }
    if (!r.contains("id") || r["id"] != id) continue;  // the answer to a send(), or to a command given up on
    if (r.contains("error"))
      return Status(Errc::invalid_argument,
                    "QEMU refused " + command + ": " + r["error"].value("desc", std::string("unknown error")));
    if (r.contains("return")) return std::optional<json>(r["return"]);
  }
}

Result<json> QmpClient::execute(const std::string& command, const json& args) {
  return execute_with_fd(command, args, -1);
}

Result<json> QmpClient::execute_with_fd(const std::string& command, const json& args, int fd) {
  BNF_TRY(post(command, args, ++last_id_, fd));
  BNF_ASSIGN_OR_RETURN(std::optional<json> r, answer(last_id_, command, ""));
  return std::move(*r);
}

Result<std::optional<json>> QmpClient::execute_unless_event(const std::string& command, const json& args,
                                                            const std::string& event) {
  BNF_TRY(post(command, args, ++last_id_));
  return answer(last_id_, command, event);
}

double QmpClient::wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double QmpClient::event_time(const json& event) {
  const json& ts = event.contains("timestamp") ? event["timestamp"] : json::object();
  return static_cast<double>(ts.value("seconds", 0LL)) + static_cast<double>(ts.value("microseconds", 0LL)) * 1e-6;
}

// RESUME says the guest runs again (event-driven: no polling delay in the
// trip's time); query-migrate in between catches a failed load.
Result<double> QmpClient::wait_incoming_loaded(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto resumed = wait_event("RESUME", std::chrono::milliseconds(50));
    if (resumed.is_ok()) return event_time(*resumed);
    if (resumed.status().code() != Errc::cancelled) return resumed.status();
    BNF_ASSIGN_OR_RETURN(json m, execute("query-migrate"));
    const std::string st = m.value("status", std::string());
    if (st == "failed") return Status(Errc::io, "QEMU failed to load the migration stream");
    if (st == "completed") {  // loaded; RESUME may have gone by before we asked
      auto s = execute("query-status");
      if (s.is_ok() && s->value("running", false)) return wall_now();
    }
    if (Clock::now() >= deadline) return Status(Errc::io, "QEMU did not finish loading the migration stream in time");
  }
}

Result<json> QmpClient::wait_event(const std::string& name, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if ((*it)["event"] == name) {
        json e = std::move(*it);
        events_.erase(it);
        return e;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Status(Errc::cancelled, "QMP: no " + name + " event in time");
    BNF_ASSIGN_OR_RETURN(json m, read_message(left));
    if (m.contains("event")) events_.push_back(std::move(m));
  }
}

}  // namespace bnf::qemu
