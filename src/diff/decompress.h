// The decompressed stream of a layer blob: compression detected by magic (gzip, zstd, or
// none, as containerd's compression.DecompressStream does), hashed and counted as it is read
// (the uncompressed digest is the layer's diffID).
//
// Decompression and hashing are most of a layer apply's CPU time (zlib alone was ~47% of a
// cold pull of bench/big:1), so gzip goes through isa-l's igzip (2-3x zlib's speed), and ReadAhead runs the whole decompress+hash side on its own thread, overlapping it
// with the file writes on the caller's thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "common/status.h"
#include "content/content.h"
#include "content/digest.h"

namespace berth::diff {

enum class Compression { kDetect, kNone, kGzip, kZstd };

// Produces decompressed bytes; Read returns 0 at the end. Errors: InvalidArgument (corrupt
// data), DataLoss (truncated stream), or the blob reader's error.
class Decompressor {
 public:
  virtual ~Decompressor() = default;
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

// The expansion bound (T7): a compressed blob may decompress to at most
// max(ratio × its size, kMinExpansionBytes) bytes; past that the read fails with
// InvalidArgument. Without it a 67 KB zstd layer (zstd has no inherent ratio limit) writes
// 2 GiB. Deflate cannot expand more than ~1032:1, so the default ratio never limits a valid
// gzip stream; a lower configured ratio limits gzip and zstd alike. The floor keeps small
// legitimate layers of very compressible data (a zstd frame of zeros) working. Configured by
// [diff] max_expansion_ratio in berthd's config; 0 turns the bound off.
inline constexpr uint64_t kDefaultMaxExpansionRatio = 1100;
inline constexpr uint64_t kMinExpansionBytes = 64ull << 20;

// The decompressed size a compressed blob of `compressed_size` bytes may reach under `ratio`
// (0 = unbounded: INT64_MAX).
int64_t MaxDecompressedSize(int64_t compressed_size, uint64_t ratio);

// Opens `blob` for sequential decompressed reads; `*detected` says what the magic was.
// A compressed blob is bounded by `max_expansion_ratio` (see above); a plain one by its size.
Result<std::unique_ptr<Decompressor>> OpenDecompressor(
    content::ReaderAt& blob, Compression* detected,
    uint64_t max_expansion_ratio = kDefaultMaxExpansionRatio);

// Reads a Decompressor to its end on a background thread, in chunks, a few ahead of the
// consumer, hashing as it goes. One consumer thread calls Next(); destroying the object stops
// and joins the producer (so an early error return never leaves a thread behind).
class ReadAhead {
 public:
  explicit ReadAhead(std::unique_ptr<Decompressor> d);
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // The next chunk, valid until the following Next() call; empty at the end.
  Result<std::string_view> Next();
  // Reads (and hashes) everything that is left.
  Status Drain();
  // Valid once Next() has returned the end: sha256 of the whole stream and its length.
  std::string Digest() const;
  int64_t size() const;

 private:
  void Produce();

  static constexpr size_t kChunkSize = 1 << 20;
  static constexpr size_t kDepth = 4;  // chunks buffered ahead: bounded memory

  std::unique_ptr<Decompressor> d_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> ready_;  // filled chunks, in order
  std::deque<std::string> free_;   // buffers to reuse
  std::string current_;            // the chunk the consumer holds
  bool done_ = false;              // producer reached the end or an error
  bool stop_ = false;              // consumer is gone
  Status error_;
  content::Sha256 sha_;
  int64_t size_ = 0;
  std::thread producer_;
};

}  // namespace berth::diff
