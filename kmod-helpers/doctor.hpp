// `bnf doctor`: what this host's kernel and hardware offer bnf.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bnf {

struct Check {
  std::string name;
  bool ok = false;
  std::string detail;
};

std::vector<Check> run_doctor();
nlohmann::json doctor_json(const std::vector<Check>& checks);
std::string doctor_text(const std::vector<Check>& checks);

}  // namespace bnf
