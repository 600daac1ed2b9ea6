// What a pusher remembers about the last image it pushed to one snapshot: the
// digest table it committed and the lineage/epoch/root that named it. With it,
// an incremental push needs no digest table from the receiver, and a dirty
// bitmap can be trusted against a base proven to be the one it describes.
#pragma once

#include <string>

#include "common/status.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

struct PushState {
  std::string lineage;
  uint64_t epoch = 0;
  Digest root{};
  DigestKey key{};
  uint64_t size_bytes = 0;
  DigestTable table;

  Status save(const std::string& path) const;
  static Result<PushState> load(const std::string& path);
};

// Default location: $XDG_STATE_HOME/bnf/push (or ~/.local/state/bnf/push), one file per (peer, name).
std::string default_push_state_path(const std::string& peer, const std::string& name);

}  // namespace bnf
