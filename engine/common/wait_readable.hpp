// Waiting on two descriptors in one thread (a relayed trip's stream and its
// return path), so that neither side's reader is a second thread.
#pragma once

#include "common/status.hpp"

namespace bnf {

struct Readable {
  bool first = false;  // readable, at its end, or broken: a read will say which
  bool second = false;
};
// Blocks until `first` or `second` can be read, or `timeout_ms` passed
// (negative: no limit; then both are false).
Result<Readable> wait_readable(int first, int second, int timeout_ms = -1);

}  // namespace bnf
