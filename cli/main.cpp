// bnf: back-and-forth live migration engine. See README.md.
#include <CLI/CLI.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"bnf: back-and-forth migration engine (retained snapshots, incremental page transfer)"};
  app.require_subcommand(1);
  int rc = 0;
  bnf::cli::add_daemon_command(app, rc);
  bnf::cli::add_image_commands(app, rc);
  bnf::cli::add_snapshot_commands(app, rc);
  bnf::cli::add_doctor_command(app, rc);
  bnf::cli::add_qemu_stream_command(app, rc);
  bnf::cli::add_vm_commands(app, rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}
