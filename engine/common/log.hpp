// Minimal leveled logging to stderr. The level is a value owned by the caller
// (the CLI or the daemon), passed where it is needed: no global state.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string_view>

namespace bnf {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::info, std::string_view tag = "bnf") : level_(level), tag_(tag) {}
  template <typename... Args>
  void log(LogLevel lvl, fmt::format_string<Args...> f, Args&&... args) const {
    if (lvl > level_) return;
    static constexpr std::string_view names[] = {"error", "warn", "info", "debug"};
    std::string line = fmt::format("{} {}: ", tag_, names[static_cast<int>(lvl)]);
    line += fmt::format(f, std::forward<Args>(args)...);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::info, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::warn, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void error(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::error, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void debug(fmt::format_string<Args...> f, Args&&... a) const {
    log(LogLevel::debug, f, std::forward<Args>(a)...);
  }

 private:
  LogLevel level_;
  std::string_view tag_;
};

}  // namespace bnf
