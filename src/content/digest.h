// Content digests ("sha256:<64 lowercase hex>") and an incremental SHA-256 (OpenSSL EVP).
//
// A digest names a blob on disk (`blobs/sha256/<hex>`), so it is validated before any path is
// built from it (containerd's store.go `blobPath`; reliability-anchors T10): exactly the
// algorithm "sha256", exactly 64 characters of [0-9a-f]. go-digest accepts sha384/sha512 too,
// but no client sends them and we store none, so they are InvalidArgument here.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::content {

inline constexpr std::string_view kSha256Prefix = "sha256:";
inline constexpr size_t kSha256HexLength = 64;

// InvalidArgument (naming the digest, quoted) unless `digest` is a well-formed sha256 digest.
Status ValidateDigest(std::string_view digest);
// The hex part of a digest that passed ValidateDigest (checks again; never builds a bad path).
Result<std::string> DigestHex(std::string_view digest);
// True when `hex` is exactly 64 lowercase hex characters (a blob file name).
bool IsSha256Hex(std::string_view hex);

// Incremental SHA-256. Digest() may be called at any point and does not end the hash, so a
// writer can report the digest of the bytes so far and keep appending. Move-only.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);
  void Reset();
  // "sha256:<hex>" of everything passed to Update since construction or the last Reset.
  std::string Digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// "sha256:<hex>" of `bytes`.
std::string DigestOf(std::string_view bytes);

}  // namespace berth::content
