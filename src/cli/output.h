// How commands print results: aligned tables for people (--format table), JSON for scripts
// (--format json). Errors never go here; they go to stderr via PrintError.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "client/client.h"
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

// Binary units with one decimal, like ctr's progress.Bytes: "512 B", "1.2 MiB", "3.0 GiB".
std::string HumanSize(int64_t bytes);

// How long ago, for AGE-style columns: "Less than a second", "5 seconds", "About a minute",
// "3 hours", "2 days", "6 weeks", "4 months", "2 years" (docker's units.HumanDuration).
std::string HumanDuration(std::chrono::nanoseconds d);

// FormatRfc3339 is the client library's (leases need it for gc.expire).
using client::FormatRfc3339;

// Standard base64 with padding, as Go's encoding/json prints []byte.
std::string Base64(std::string_view bytes);

// Pretty-printed, newline-terminated. Invalid UTF-8 is replaced rather than thrown on.
void PrintJson(const nlohmann::json& j, std::ostream& out);
// One line, newline-terminated and flushed: for streams of records (berth events).
void PrintJsonLine(const nlohmann::json& j, std::ostream& out);

}  // namespace berth::cli
