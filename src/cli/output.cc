#include "cli/output.h"

#include <algorithm>
#include <cstdio>

namespace berth::cli {
namespace {

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// Terminal columns, approximated by UTF-8 code points (good enough without wcwidth tables).
size_t DisplayWidth(const std::string& s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

constexpr size_t kGap = 3;

}  // namespace

void Table::Print(std::ostream& out) const {
  std::vector<std::vector<std::string>> lines;
  lines.reserve(rows_.size() + 1);
  lines.push_back(headers_);
  for (const auto& row : rows_) {
    std::vector<std::string> cells;
    for (const auto& c : row) cells.push_back(Escape(c));
    cells.resize(std::max(cells.size(), headers_.size()));
    lines.push_back(std::move(cells));
  }
  size_t ncols = 0;
  for (const auto& l : lines) ncols = std::max(ncols, l.size());
  std::vector<size_t> widths(ncols, 0);
  for (const auto& l : lines) {
    for (size_t i = 0; i < l.size(); ++i) widths[i] = std::max(widths[i], DisplayWidth(l[i]));
  }
  for (const auto& l : lines) {
    std::string text;
    for (size_t i = 0; i < l.size(); ++i) {
      text += l[i];
      if (i + 1 < l.size()) text.append(widths[i] - DisplayWidth(l[i]) + kGap, ' ');
    }
    // Empty trailing cells would otherwise leave padding behind.
    text.erase(text.find_last_not_of(' ') + 1);
    out << text << '\n';
  }
}

std::string JoinLabels(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return out;
}

void PrintJson(const nlohmann::json& j, std::ostream& out) {
  out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

}  // namespace berth::cli
