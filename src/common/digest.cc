#include "common/digest.h"

namespace berth {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// go-digest's DigestRegexpAnchored: ^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$
bool MatchesDigestGrammar(std::string_view alg, std::string_view enc) {
  bool prev_sep = true;
  for (char c : alg) {
    bool sep = c == '.' || c == '+' || c == '_' || c == '-';
    if (!(IsLowerAlnum(c) || (sep && !prev_sep))) return false;
    prev_sep = sep;
  }
  if (prev_sep) return false;
  for (char c : enc) {
    if (!(IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '=' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Status ValidateDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == digest.size()) {
    return InvalidArgument("invalid checksum digest format");
  }
  std::string_view alg = digest.substr(0, colon);
  std::string_view enc = digest.substr(colon + 1);
  size_t hex_len = alg == "sha256" ? 64 : alg == "sha384" ? 96 : alg == "sha512" ? 128 : 0;
  if (hex_len == 0) {
    return InvalidArgument(MatchesDigestGrammar(alg, enc) ? "unsupported digest algorithm"
                                                          : "invalid checksum digest format");
  }
  if (enc.size() != hex_len) return InvalidArgument("invalid checksum digest length");
  for (char c : enc) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return InvalidArgument("invalid checksum digest format");
    }
  }
  return Status::Ok();
}

}  // namespace berth
