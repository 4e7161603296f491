#include "cli/output.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

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

void PrintJsonLine(const nlohmann::json& j, std::ostream& out) {
  out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

std::string HumanSize(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

std::string HumanDuration(std::chrono::nanoseconds d) {
  using namespace std::chrono;
  auto plural = [](int64_t n, const char* unit) {
    return std::to_string(n) + " " + unit + (n == 1 ? "" : "s");
  };
  int64_t secs = duration_cast<seconds>(d).count();
  if (secs < 1) return "Less than a second";
  if (secs < 60) return plural(secs, "second");
  int64_t mins = secs / 60;
  if (mins == 1) return "About a minute";
  if (mins < 60) return plural(mins, "minute");
  int64_t hours = secs / 3600;
  if (hours == 1) return "About an hour";
  if (hours < 48) return plural(hours, "hour");
  if (hours < 24 * 7 * 2) return plural(hours / 24, "day");
  if (hours < 24 * 30 * 2) return plural(hours / 24 / 7, "week");
  if (hours < 24 * 365 * 2) return plural(hours / 24 / 30, "month");
  return plural(hours / 24 / 365, "year");
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) |
                 (static_cast<uint8_t>(bytes[i + 1]) << 8) | static_cast<uint8_t>(bytes[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 0x3F];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 0x3F];
    out += kAlphabet[(v >> 12) & 0x3F];
    out += rest == 2 ? kAlphabet[(v >> 6) & 0x3F] : '=';
    out += '=';
  }
  return out;
}

}  // namespace berth::cli
