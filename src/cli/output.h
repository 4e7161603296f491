// How commands print results: aligned tables for people (--format table), JSON for scripts
// (--format json). Errors never go here; they go to stderr via PrintError.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "common/validate.h"

namespace berth::cli {

enum class Format { kTable, kJson };

// Columns padded to their widest cell plus three spaces; the last column is not padded so
// lines carry no trailing blanks. Control characters in cells are escaped so one row stays
// one line.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "k1=v1,k2=v2", sorted by key (Labels is ordered).
std::string JoinLabels(const Labels& labels);

// Pretty-printed, newline-terminated. Invalid UTF-8 is replaced rather than thrown on.
void PrintJson(const nlohmann::json& j, std::ostream& out);

}  // namespace berth::cli
