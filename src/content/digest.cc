#include "content/digest.h"

#include <openssl/evp.h>

#include <stdexcept>

#include "common/digest.h"
#include "common/validate.h"

namespace berth::content {

bool IsSha256Hex(std::string_view hex) {
  if (hex.size() != kSha256HexLength) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status ValidateDigest(std::string_view digest) {
  // The shared go-digest rules first, then what this store can hold: sha256 only.
  if (Status s = berth::ValidateDigest(digest); !s.ok()) {
    return InvalidArgument(Quote(digest) + " is not a valid digest: " + s.message());
  }
  if (!digest.starts_with(kSha256Prefix)) {
    return InvalidArgument(Quote(digest) + " is not a valid digest: unsupported digest algorithm");
  }
  return Status::Ok();
}

Result<std::string> DigestHex(std::string_view digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  return std::string(digest.substr(kSha256Prefix.size()));
}

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
  ~State() { EVP_MD_CTX_free(ctx); }
};

// OpenSSL only fails here on allocation failure or a broken library: an internal invariant,
// so it throws (turned into Internal at the RPC boundary) rather than threading a Status
// through every hash update.
Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (!state_->ctx) throw std::runtime_error("EVP_MD_CTX_new failed");
  Reset();
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Reset() {
  if (EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
}

void Sha256::Update(std::string_view bytes) {
  if (bytes.empty()) return;
  if (EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("EVP_DigestUpdate failed");
  }
}

std::string Sha256::Digest() const {
  State copy;
  copy.ctx = EVP_MD_CTX_new();
  if (!copy.ctx || EVP_MD_CTX_copy_ex(copy.ctx, state_->ctx) != 1) {
    throw std::runtime_error("EVP_MD_CTX_copy_ex failed");
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(copy.ctx, md, &len) != 1) {
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kSha256Prefix);
  out.reserve(kSha256Prefix.size() + 2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

std::string DigestOf(std::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.Digest();
}

}  // namespace berth::content
