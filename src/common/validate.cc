#include "common/validate.h"

#include <cstdio>

namespace berth {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

Status ValidateIdentifier(std::string_view id) {
  if (id.empty()) return InvalidArgument("identifier must not be empty");
  if (id.size() > kMaxIdentifierLength) {
    return InvalidArgument("identifier " + Quote(id) + " greater than maximum length (" +
                           std::to_string(kMaxIdentifierLength) + " characters)");
  }
  // ^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$ : starts and ends alnum, no two separators in a row.
  bool prev_sep = true;
  for (char c : id) {
    bool sep = c == '.' || c == '_' || c == '-';
    if (!(IsAlnum(c) || (sep && !prev_sep))) {
      prev_sep = false;
      return InvalidArgument("identifier " + Quote(id) +
                             " must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$");
    }
    prev_sep = sep;
  }
  if (prev_sep) {
    return InvalidArgument("identifier " + Quote(id) +
                           " must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$");
  }
  return Status::Ok();
}

Status ValidateLabel(std::string_view key, std::string_view value) {
  if (key.size() + value.size() > kMaxLabelSize) {
    return InvalidArgument("label key and value greater than maximum size (" +
                           std::to_string(kMaxLabelSize) +
                           " bytes), key: " + std::string(key.substr(0, 10)));
  }
  return Status::Ok();
}

Status ValidateLabels(const Labels& labels) {
  for (const auto& [k, v] : labels) RETURN_IF_ERROR(ValidateLabel(k, v));
  return Status::Ok();
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace berth
