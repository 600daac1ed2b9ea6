#include <fcntl.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common/files.hpp"
#include "stream/ram_file_lander.hpp"

namespace bnf::cli {

namespace {

struct FilterArgs {
  std::string in = "-";
  std::string out = "-";
  std::string ram_file;
  std::string block;
};

int run_filter(const FilterArgs& a) {
  UniqueFd in_fd;
  UniqueFd out_fd;
  if (a.in != "-") {
    auto fd = open_file(a.in, O_RDONLY);
    if (!fd.is_ok()) return fail(fd.status().message());
    in_fd = std::move(fd).value();
  }
  if (a.out != "-") {
    auto fd = open_file(a.out, O_WRONLY | O_CREAT | O_TRUNC, kUserFileMode);
    if (!fd.is_ok()) return fail(fd.status().message());
    out_fd = std::move(fd).value();
  }
  auto lander = qemu::RamFileLander::open(a.ram_file, a.block);
  if (!lander.is_ok()) return fail(lander.status().message());
  qemu::FdSource src(in_fd.valid() ? in_fd.get() : 0);
  qemu::FdSink sink(out_fd.valid() ? out_fd.get() : 1);
  qemu::StreamRewriter rw(src, sink, **lander);
  if (Status s = rw.run(); !s.is_ok()) return fail(s.message());
  const auto& st = rw.stats();
  const auto& ls = (*lander)->stats();
  fmt::print(stderr, "{}\n",
             nlohmann::json{{"bytes_in", st.bytes_in},
                            {"bytes_out", st.bytes_out},
                            {"pages", st.pages},
                            {"pages_removed", st.pages_removed},
                            {"zero_pages", st.zero_pages},
                            {"ram_sections", st.ram_sections},
                            {"device_bytes", st.device_bytes},
                            {"landed", ls.landed},
                            {"same", ls.same},
                            {"zeroed", ls.zeroed},
                            {"passed", ls.passed}}
                 .dump());
  return 0;
}

}  // namespace

void add_qemu_stream_command(CLI::App& app, int& rc) {
  CLI::App* qs = app.add_subcommand("qemu-stream", "QEMU 7.2 migration stream tools (stream mode building blocks)");
  qs->require_subcommand(1);
  auto a = std::make_shared<FilterArgs>();
  CLI::App* f = qs->add_subcommand(
      "filter", "land one RAM block's pages in a RAM file, forward the rest of the stream (stats on stderr)");
  f->add_option("--in", a->in, "source stream ('-' for stdin)")->capture_default_str();
  f->add_option("--out", a->out, "rewritten stream ('-' for stdout)")->capture_default_str();
  f->add_option("--ram-file", a->ram_file, "memory-backend file of the destination")->required();
  f->add_option("--block", a->block, "RAM block to land (the memory backend id)")->required();
  f->callback([a, &rc] { rc = run_filter(*a); });
}

}  // namespace bnf::cli
