// Proves a retained snapshot's image against its digest table while the VM
// is away, so that the trip back need not: on a shared-mode back trip the
// proof during the trip (BaseCheck) was most of the downtime. An inotify
// watch armed before the image is read names every open, write, attribute
// change, move or removal of the file since; any such event (other than the
// proof's own open), a page that differs, or a manifest other than the proven
// one leaves the proof to the trip, as before.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "common/status.hpp"
#include "common/unique_fd.hpp"
#include "digest/page_digest.hpp"
#include "snapshot/manifest.hpp"

namespace bnf {

class BaseProof {
 public:
  // Starts the proof of `image` (the image of `m`, whose table is `table`) on
  // a thread of its own at the lowest CPU priority.
  static Result<std::unique_ptr<BaseProof>> start(const std::string& image, const Manifest& m, DigestTable table);
  ~BaseProof();
  BaseProof(const BaseProof&) = delete;
  BaseProof& operator=(const BaseProof&) = delete;

  // True if the image is now proven to be `m`'s: the proof finished, every
  // page matched, and nothing opened or changed the file since. Does not wait.
  [[nodiscard]] bool holds(const Manifest& m);
  // Why holds() is false, for the log ("" while it holds or runs).
  [[nodiscard]] std::string doubt() const;
  [[nodiscard]] bool finished() const { return finished_; }

 private:
  BaseProof(std::string image, const Manifest& m, DigestTable table, UniqueFd watch);
  void run() noexcept;
  Status prove();
  void read_events();

  std::string image_;
  Manifest proven_;
  DigestTable table_;
  UniqueFd watch_;
  unsigned own_opens_ = 0;  // the proof's own open of the image
  std::string doubt_;
  std::string failed_;  // set by the thread before finished_
  std::atomic<uint64_t> mismatched_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace bnf
