#include "push/plan_frames.hpp"

#include <vector>

#include "common/page.hpp"
#include "protocol/control.hpp"
#include "push/sharding.hpp"

namespace bnf {

namespace {
constexpr uint64_t kFramePages = 256;  // 1 MiB of payload per PAGES frame
constexpr uint64_t kFrameRuns = 256;
}  // namespace

Result<PlanPosted> post_plan(transport::Connection& c, std::span<const std::byte> image, const PagePlan& plan,
                             unsigned stream, unsigned streams) {
  PlanPosted n;
  for (const auto& runs : frames_for_stream(plan.send, stream, streams, kFramePages, kFrameRuns)) {
    std::vector<transport::ConstBuffer> payload;
    payload.reserve(runs.size());
    for (const PageRun& r : runs) payload.push_back({image.data() + r.first * kPageSize, r.count * kPageSize});
    BNF_TRY(proto::post_run_frame(c, proto::FrameType::pages, runs, payload));
    ++n.frames;
    n.pages += pages_in(runs);
  }
  for (const auto& runs : frames_for_stream(plan.zero, stream, streams, 1ULL << 40, proto::kMaxRunsPerFrame)) {
    BNF_TRY(proto::post_run_frame(c, proto::FrameType::zeros, runs, {}));
    ++n.frames;
  }
  return n;
}

}  // namespace bnf
