#include "diff/decompress.h"

#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include <isa-l/igzip_lib.h>

namespace berth::diff {
namespace {

constexpr size_t kInChunk = 256 * 1024;

// Sequential reads over a ReaderAt, first serving the bytes already read to sniff the magic.
class BlobSource {
 public:
  BlobSource(content::ReaderAt& r, std::string prefix)
      : r_(r), prefix_(std::move(prefix)), off_(static_cast<int64_t>(prefix_.size())) {}
  Result<size_t> Read(char* buf, size_t n) {
    if (prefix_off_ < prefix_.size()) {
      size_t k = std::min(n, prefix_.size() - prefix_off_);
      std::memcpy(buf, prefix_.data() + prefix_off_, k);
      prefix_off_ += k;
      return k;
    }
    ASSIGN_OR_RETURN(size_t got, r_.ReadAt(buf, n, off_));
    off_ += static_cast<int64_t>(got);
    return got;
  }

 private:
  content::ReaderAt& r_;
  std::string prefix_;
  size_t prefix_off_ = 0;
  int64_t off_;
};

class PlainReader final : public Decompressor {
 public:
  explicit PlainReader(BlobSource src) : src_(std::move(src)) {}
  Result<size_t> Read(char* buf, size_t n) override { return src_.Read(buf, n); }

 private:
  BlobSource src_;
};

// gzip through isa-l's igzip. Concatenated members are read one after another, as Go's
// gzip.Reader (multistream) does; bytes after a member that are not a gzip header are an error.
class GzipReader final : public Decompressor {
 public:
  explicit GzipReader(BlobSource src) : src_(std::move(src)), in_(kInChunk, '\0') {
    state_ = std::make_unique<inflate_state>();
    isal_inflate_init(state_.get());
    state_->crc_flag = ISAL_GZIP;
  }
  Result<size_t> Read(char* buf, size_t n) override {
    auto* s = state_.get();
    s->next_out = reinterpret_cast<uint8_t*>(buf);
    s->avail_out = static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
    const uint32_t want = s->avail_out;
    while (s->avail_out == want) {
      if (s->block_state == ISAL_BLOCK_FINISH) {
        if (s->avail_in == 0 && !eof_) RETURN_IF_ERROR(Fill());
        if (s->avail_in == 0) return size_t{0};  // clean end after a whole member
        // Another member follows: keep the unread input across the reset.
        uint8_t* next = s->next_in;
        uint32_t avail = s->avail_in;
        isal_inflate_reset(s);
        s->crc_flag = ISAL_GZIP;
        s->next_in = next;
        s->avail_in = avail;
      }
      if (s->avail_in == 0 && !eof_) RETURN_IF_ERROR(Fill());
      bool at_eof = s->avail_in == 0 && eof_;
      int rc = isal_inflate(s);
      if (rc < 0) return std::unexpected(GzipError(rc));
      if (s->avail_out != want) break;
      if (at_eof && s->block_state != ISAL_BLOCK_FINISH) {
        return Err(Code::kDataLoss, "gzip stream truncated: unexpected EOF");
      }
    }
    return static_cast<size_t>(want - s->avail_out);
  }

 private:
  Status Fill() {
    ASSIGN_OR_RETURN(size_t got, src_.Read(in_.data(), in_.size()));
    if (got == 0) eof_ = true;
    state_->next_in = reinterpret_cast<uint8_t*>(in_.data());
    state_->avail_in = static_cast<uint32_t>(got);
    return {};
  }
  static Status GzipError(int rc) {
    const char* what = "corrupt data";
    switch (rc) {
      case ISAL_INVALID_WRAPPER: what = "invalid header"; break;
      case ISAL_UNSUPPORTED_METHOD: what = "unsupported compression method"; break;
      case ISAL_INCORRECT_CHECKSUM: what = "invalid checksum"; break;
      case ISAL_NEED_DICT: what = "preset dictionary"; break;
      default: break;
    }
    return Status(Code::kInvalidArgument, std::string("gzip: ") + what);
  }

  BlobSource src_;
  std::string in_;
  std::unique_ptr<inflate_state> state_;  // ~100 KiB: keep it off the stack
  bool eof_ = false;
};

class ZstdReader final : public Decompressor {
 public:
  explicit ZstdReader(BlobSource src) : src_(std::move(src)), in_(kInChunk, '\0') {
    ds_ = ZSTD_createDStream();
    // Bound the window (T7): 128 MiB, zstd's default max for streaming is the same order.
    if (ds_) ZSTD_DCtx_setParameter(ds_, ZSTD_d_windowLogMax, 27);
    inb_ = {in_.data(), 0, 0};
  }
  ~ZstdReader() override { ZSTD_freeDStream(ds_); }
  Result<size_t> Read(char* buf, size_t n) override {
    if (!ds_) return Err(Code::kInternal, "ZSTD_createDStream failed");
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (inb_.pos == inb_.size && !eof_) {
        ASSIGN_OR_RETURN(size_t got, src_.Read(in_.data(), in_.size()));
        if (got == 0) {
          eof_ = true;
        } else {
          inb_ = {in_.data(), got, 0};
        }
      }
      bool at_eof = inb_.pos == inb_.size && eof_;
      if (at_eof && frame_done_) return size_t{0};
      size_t rc = ZSTD_decompressStream(ds_, &out, &inb_);
      if (ZSTD_isError(rc)) {
        return Err(Code::kInvalidArgument,
                   std::string("zstd: corrupt data: ") + ZSTD_getErrorName(rc));
      }
      frame_done_ = rc == 0;
      if (at_eof && out.pos == 0) {
        if (frame_done_) return size_t{0};
        return Err(Code::kDataLoss, "zstd stream truncated: unexpected EOF");
      }
    }
    return out.pos;
  }

 private:
  BlobSource src_;
  std::string in_;
  ZSTD_inBuffer inb_;
  ZSTD_DStream* ds_ = nullptr;
  bool eof_ = false;
  bool frame_done_ = true;
};

// Fails the stream once it produces more than `limit` bytes: one bound for every decompressor.
class BoundedReader final : public Decompressor {
 public:
  BoundedReader(std::unique_ptr<Decompressor> d, std::string_view kind, int64_t compressed,
                uint64_t ratio)
      : d_(std::move(d)),
        kind_(kind),
        compressed_(compressed),
        ratio_(ratio),
        limit_(MaxDecompressedSize(compressed, ratio)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    if (limit_ == INT64_MAX) return d_->Read(buf, n);  // bound turned off
    // Ask for one byte past the limit at most, so reaching it exactly is still fine.
    const int64_t room = limit_ - total_ + 1;
    if (room <= 0) return std::unexpected(TooBig());
    ASSIGN_OR_RETURN(size_t got, d_->Read(buf, std::min<size_t>(n, static_cast<size_t>(room))));
    total_ += static_cast<int64_t>(got);
    if (total_ > limit_) return std::unexpected(TooBig());
    return got;
  }

 private:
  Status TooBig() const {
    return InvalidArgument(std::string(kind_) + " layer of " + std::to_string(compressed_) +
                           " bytes decompresses to more than " + std::to_string(limit_) +
                           " bytes (max_expansion_ratio " + std::to_string(ratio_) +
                           " in berthd's [diff] config)");
  }

  std::unique_ptr<Decompressor> d_;
  std::string_view kind_;
  int64_t compressed_;
  uint64_t ratio_;
  int64_t limit_;
  int64_t total_ = 0;
};

}  // namespace

int64_t MaxDecompressedSize(int64_t compressed_size, uint64_t ratio) {
  if (ratio == 0) return INT64_MAX;
  const uint64_t size = compressed_size > 0 ? static_cast<uint64_t>(compressed_size) : 0;
  uint64_t limit = size > static_cast<uint64_t>(INT64_MAX) / ratio ? INT64_MAX : size * ratio;
  limit = std::max(limit, kMinExpansionBytes);
  return static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX));
}

Result<std::unique_ptr<Decompressor>> OpenDecompressor(content::ReaderAt& blob,
                                                       Compression* detected,
                                                       uint64_t max_expansion_ratio) {
  std::string magic(4, '\0');
  size_t have = 0;
  while (have < magic.size()) {
    ASSIGN_OR_RETURN(size_t got, blob.ReadAt(magic.data() + have, magic.size() - have,
                                             static_cast<int64_t>(have)));
    if (got == 0) break;
    have += got;
  }
  magic.resize(have);
  BlobSource src(blob, magic);
  if (magic.starts_with("\x1f\x8b")) {
    *detected = Compression::kGzip;
    return std::make_unique<BoundedReader>(std::make_unique<GzipReader>(std::move(src)), "gzip",
                                           blob.Size(), max_expansion_ratio);
  }
  if (magic.starts_with("\x28\xb5\x2f\xfd")) {
    *detected = Compression::kZstd;
    return std::make_unique<BoundedReader>(std::make_unique<ZstdReader>(std::move(src)), "zstd",
                                           blob.Size(), max_expansion_ratio);
  }
  *detected = Compression::kNone;
  return std::make_unique<PlainReader>(std::move(src));
}

ReadAhead::ReadAhead(std::unique_ptr<Decompressor> d) : d_(std::move(d)) {
  producer_ = std::thread([this] { Produce(); });
}

ReadAhead::~ReadAhead() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  producer_.join();
}

void ReadAhead::Produce() {
  for (;;) {
    std::string buf;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || ready_.size() < kDepth; });
      if (stop_) return;
      if (!free_.empty()) {
        buf = std::move(free_.front());
        free_.pop_front();
      }
    }
    buf.resize(kChunkSize);
    // Fill the whole chunk (decompressors return short reads) so the consumer sees few calls.
    size_t have = 0;
    Status err;
    while (have < buf.size()) {
      auto got = d_->Read(buf.data() + have, buf.size() - have);
      if (!got) {
        err = got.error();
        break;
      }
      if (*got == 0) break;
      have += *got;
    }
    buf.resize(have);
    sha_.Update(buf);  // only this thread touches sha_ until done_ is published
    std::lock_guard lk(mu_);
    size_ += static_cast<int64_t>(have);
    if (have > 0) ready_.push_back(std::move(buf));
    if (!err.ok() || have < kChunkSize) {
      error_ = err;
      done_ = true;
      cv_.notify_all();
      return;
    }
    cv_.notify_all();
  }
}

Result<std::string_view> ReadAhead::Next() {
  std::unique_lock lk(mu_);
  if (!current_.empty()) free_.push_back(std::move(current_));
  current_.clear();
  cv_.notify_all();
  cv_.wait(lk, [&] { return !ready_.empty() || done_; });
  if (!ready_.empty()) {
    current_ = std::move(ready_.front());
    ready_.pop_front();
    return std::string_view(current_);
  }
  if (!error_.ok()) return std::unexpected(error_);
  return std::string_view();
}

Status ReadAhead::Drain() {
  for (;;) {
    ASSIGN_OR_RETURN(std::string_view chunk, Next());
    if (chunk.empty()) return {};
  }
}

std::string ReadAhead::Digest() const {
  std::lock_guard lk(mu_);
  return sha_.Digest();
}

int64_t ReadAhead::size() const {
  std::lock_guard lk(mu_);
  return size_;
}

}  // namespace berth::diff
