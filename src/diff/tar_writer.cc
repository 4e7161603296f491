#include "diff/tar_writer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace berth::diff {
namespace {

constexpr size_t kBlock = 512;
constexpr int64_t kMaxOctal7 = 07777777;       // 8-byte fields: mode, uid, gid, devices
constexpr int64_t kMaxOctal11 = 077777777777;  // 12-byte fields: size, mtime

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c != 0 && static_cast<unsigned char>(c) < 0x80; });
}

std::string ToAscii(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != 0 && static_cast<unsigned char>(c) < 0x80) out += c;
  }
  return out;
}

// Copies as much of `s` as fits; NUL-terminated when shorter than the field.
void PutString(char* field, size_t width, std::string_view s) {
  if (s.empty()) return;  // an empty view may carry a null data() that memcpy must not see
  std::memcpy(field, s.data(), std::min(width, s.size()));
}

// Zero-padded octal in width-1 digits plus NUL; 0 when it does not fit (a PAX record then
// carries the value).
void PutOctal(char* field, size_t width, int64_t v, int64_t max) {
  if (v < 0 || v > max) v = 0;
  std::string digits(width - 1, '0');
  for (size_t i = width - 1; i-- > 0 && v > 0; v >>= 3)
    digits[i] = static_cast<char>('0' + (v & 7));
  std::memcpy(field, digits.data(), width - 1);
  field[width - 1] = '\0';
}

void PutChecksum(char* block) {
  std::memset(block + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(block[i]);
  PutOctal(block + 148, 7, sum, kMaxOctal7);
  block[155] = ' ';
}

std::string PaxRecord(const std::string& k, const std::string& v) {
  size_t size = k.size() + v.size() + 3;
  size += std::to_string(size).size();
  std::string rec = std::to_string(size) + " " + k + "=" + v + "\n";
  if (rec.size() != size) rec = std::to_string(rec.size()) + " " + k + "=" + v + "\n";
  return rec;
}

// Go's path.Join(dir, "PaxHeaders.0", base) for the name of an extended header.
std::string PaxHeaderName(std::string_view name) {
  size_t slash = name.rfind('/');
  std::string dir = slash == std::string_view::npos ? "" : std::string(name.substr(0, slash));
  std::string base =
      slash == std::string_view::npos ? std::string(name) : std::string(name.substr(slash + 1));
  std::string out = dir.empty() ? "PaxHeaders.0" : dir + "/PaxHeaders.0";
  if (!base.empty()) out += "/" + base;
  return out;
}

// Go's splitUSTARPath: a long ASCII name cut at a slash into prefix (≤155) and name (≤100).
bool SplitUstarPath(std::string_view name, std::string_view* prefix, std::string_view* rest) {
  size_t length = name.size();
  if (length <= 100 || !IsAscii(name)) return false;
  if (length > 156) {
    length = 156;
  } else if (name[length - 1] == '/') {
    --length;
  }
  size_t i = name.substr(0, length).rfind('/');
  if (i == std::string_view::npos || i == 0) return false;
  size_t nlen = name.size() - i - 1;
  if (nlen > 100 || nlen == 0 || i > 155) return false;
  *prefix = name.substr(0, i);
  *rest = name.substr(i + 1);
  return true;
}

}  // namespace

Status TarWriter::Pad() {
  static const char kZeros[kBlock] = {};
  size_t rem = static_cast<size_t>(written_ % static_cast<int64_t>(kBlock));
  written_ = 0;
  if (rem == 0) return Status::Ok();
  return sink_(std::string_view(kZeros, kBlock - rem));
}

Status TarWriter::WritePaxHeader(const std::string& name,
                                 const std::map<std::string, std::string>& recs) {
  std::string body;
  for (const auto& [k, v] : recs) body += PaxRecord(k, v);
  char h[kBlock] = {};
  std::string n = ToAscii(PaxHeaderName(name));
  if (n.size() > 100) n.resize(100);
  while (!n.empty() && n.back() == '/') n.pop_back();
  PutString(h, 100, n);
  PutOctal(h + 100, 8, 0, kMaxOctal7);
  PutOctal(h + 108, 8, 0, kMaxOctal7);
  PutOctal(h + 116, 8, 0, kMaxOctal7);
  PutOctal(h + 124, 12, static_cast<int64_t>(body.size()), kMaxOctal11);
  PutOctal(h + 136, 12, 0, kMaxOctal11);
  h[156] = 'x';
  std::memcpy(h + 257,
              "ustar\0"
              "00",
              8);
  PutChecksum(h);
  RETURN_IF_ERROR(sink_(std::string_view(h, kBlock)));
  RETURN_IF_ERROR(sink_(body));
  written_ = static_cast<int64_t>(body.size());
  return Pad();
}

Status TarWriter::WriteHeader(const TarHeader& hdr) {
  if (remaining_ != 0) {
    return Internal("tar entry before " + hdr.name + " is " + std::to_string(remaining_) +
                    " bytes short");
  }
  RETURN_IF_ERROR(Pad());
  if (hdr.devmajor < 0 || hdr.devmajor > kMaxOctal7 || hdr.devminor < 0 ||
      hdr.devminor > kMaxOctal7) {
    return InvalidArgument("device number of " + hdr.name + " does not fit a tar header");
  }
  std::map<std::string, std::string> pax = hdr.pax;
  if (hdr.name.size() > 100 || !IsAscii(hdr.name)) pax["path"] = hdr.name;
  if (hdr.linkname.size() > 100 || !IsAscii(hdr.linkname)) pax["linkpath"] = hdr.linkname;
  if (hdr.uid < 0 || hdr.uid > kMaxOctal7) pax["uid"] = std::to_string(hdr.uid);
  if (hdr.gid < 0 || hdr.gid > kMaxOctal7) pax["gid"] = std::to_string(hdr.gid);
  if (hdr.size > kMaxOctal11) pax["size"] = std::to_string(hdr.size);
  if (!pax.contains("mtime") && (hdr.mtime < 0 || hdr.mtime > kMaxOctal11)) {
    pax["mtime"] = std::to_string(hdr.mtime);
  }
  std::string_view prefix, name = hdr.name;
  if (hdr.ustar_if_possible && pax.size() == 1 && pax.contains("path") &&
      SplitUstarPath(hdr.name, &prefix, &name)) {
    pax.clear();
  }
  if (!pax.empty()) {
    RETURN_IF_ERROR(WritePaxHeader(hdr.name, pax));
    prefix = {};
    name = hdr.name;
  }

  char h[kBlock] = {};
  PutString(h, 100, ToAscii(name));
  PutOctal(h + 100, 8, hdr.mode, kMaxOctal7);
  PutOctal(h + 108, 8, hdr.uid, kMaxOctal7);
  PutOctal(h + 116, 8, hdr.gid, kMaxOctal7);
  PutOctal(h + 124, 12, hdr.size, kMaxOctal11);
  PutOctal(h + 136, 12, hdr.mtime, kMaxOctal11);
  h[156] = hdr.type;
  PutString(h + 157, 100, ToAscii(hdr.linkname));
  std::memcpy(h + 257,
              "ustar\0"
              "00",
              8);
  PutOctal(h + 329, 8, hdr.devmajor, kMaxOctal7);
  PutOctal(h + 337, 8, hdr.devminor, kMaxOctal7);
  PutString(h + 345, 155, prefix);
  PutChecksum(h);
  RETURN_IF_ERROR(sink_(std::string_view(h, kBlock)));
  remaining_ = hdr.size;
  written_ = 0;
  return Status::Ok();
}

Status TarWriter::WriteData(std::string_view data) {
  if (static_cast<int64_t>(data.size()) > remaining_) {
    return Internal("tar entry data longer than its header says");
  }
  RETURN_IF_ERROR(sink_(data));
  remaining_ -= static_cast<int64_t>(data.size());
  written_ += static_cast<int64_t>(data.size());
  return Status::Ok();
}

Status TarWriter::Close() {
  if (remaining_ != 0) {
    return Internal("last tar entry is " + std::to_string(remaining_) + " bytes short");
  }
  RETURN_IF_ERROR(Pad());
  static const char kEnd[2 * kBlock] = {};
  return sink_(std::string_view(kEnd, sizeof kEnd));
}

}  // namespace berth::diff
