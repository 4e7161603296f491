#include "diff/compare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "content/digest.h"

namespace berth::diff {
namespace {

constexpr size_t kOutChunk = 1 << 20;  // bytes handed to the sink at once
constexpr size_t kCopyChunk = 128 * 1024;
constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kCapabilityRecord[] = "SCHILY.xattr.security.capability";

// ---------------------------------------------------------------------------------------------
// Output: tar bytes → sha256 (diffID) → compressor → 1 MiB chunks → sink.

class Chunker {
 public:
  explicit Chunker(const ByteSink& sink) : sink_(sink) { buf_.reserve(kOutChunk); }
  Status Append(const char* p, size_t n) {
    total_ += static_cast<int64_t>(n);
    while (n > 0) {
      size_t k = std::min(n, kOutChunk - buf_.size());
      buf_.append(p, k);
      p += k;
      n -= k;
      if (buf_.size() == kOutChunk) RETURN_IF_ERROR(Flush());
    }
    return Status::Ok();
  }
  Status Flush() {
    if (buf_.empty()) return Status::Ok();
    Status s = sink_(buf_);
    buf_.clear();
    return s;
  }
  int64_t total() const { return total_; }

 private:
  const ByteSink& sink_;
  std::string buf_;
  int64_t total_ = 0;
};

class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual Status Write(std::string_view in) = 0;
  virtual Status Finish() = 0;
};

class PlainEncoder final : public Encoder {
 public:
  explicit PlainEncoder(Chunker& out) : out_(out) {}
  Status Write(std::string_view in) override { return out_.Append(in.data(), in.size()); }
  Status Finish() override { return out_.Flush(); }

 private:
  Chunker& out_;
};

class GzipEncoder final : public Encoder {
 public:
  explicit GzipEncoder(Chunker& out) : out_(out), buf_(kCopyChunk) {
    ok_ = deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) ==
          Z_OK;
  }
  ~GzipEncoder() override {
    if (ok_) deflateEnd(&z_);
  }
  Status Write(std::string_view in) override { return Run(in, Z_NO_FLUSH); }
  Status Finish() override {
    RETURN_IF_ERROR(Run({}, Z_FINISH));
    return out_.Flush();
  }

 private:
  Status Run(std::string_view in, int flush) {
    if (!ok_) return Internal("deflateInit failed");
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      z_.next_out = reinterpret_cast<Bytef*>(buf_.data());
      z_.avail_out = static_cast<uInt>(buf_.size());
      int rc = deflate(&z_, flush);
      if (rc == Z_STREAM_ERROR) return Internal("deflate failed");
      RETURN_IF_ERROR(out_.Append(buf_.data(), buf_.size() - z_.avail_out));
      if (flush == Z_FINISH ? rc == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out != 0)) {
        return Status::Ok();
      }
    }
  }

  Chunker& out_;
  std::vector<char> buf_;
  z_stream z_{};
  bool ok_ = false;
};

class ZstdEncoder final : public Encoder {
 public:
  explicit ZstdEncoder(Chunker& out)
      : out_(out), cctx_(ZSTD_createCCtx(), ZSTD_freeCCtx), buf_(ZSTD_CStreamOutSize()) {}
  Status Write(std::string_view in) override { return Run(in, ZSTD_e_continue); }
  Status Finish() override {
    RETURN_IF_ERROR(Run({}, ZSTD_e_end));
    return out_.Flush();
  }

 private:
  Status Run(std::string_view in, ZSTD_EndDirective mode) {
    if (!cctx_) return Internal("ZSTD_createCCtx failed");
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    for (;;) {
      ZSTD_outBuffer output{buf_.data(), buf_.size(), 0};
      size_t left = ZSTD_compressStream2(cctx_.get(), &output, &input, mode);
      if (ZSTD_isError(left)) return Internal(std::string("zstd: ") + ZSTD_getErrorName(left));
      RETURN_IF_ERROR(out_.Append(buf_.data(), output.pos));
      if (mode == ZSTD_e_end ? left == 0 : input.pos == input.size) return Status::Ok();
    }
  }

  Chunker& out_;
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx_;
  std::vector<char> buf_;
};

// ---------------------------------------------------------------------------------------------
// Changes → tar entries (containerd's archive.ChangeWriter).

struct InodeKey {
  dev_t dev;
  ino_t ino;
  auto operator<=>(const InodeKey&) const = default;
};

class LayerWriter {
 public:
  LayerWriter(int upper_root, TarWriter& tw, int64_t whiteout_time)
      : upper_root_(upper_root), tw_(tw), whiteout_time_(whiteout_time) {}

  Status Handle(const Change& c) {
    std::string_view rel = c.path.substr(1);  // "/a/b" → "a/b"
    if (c.kind == ChangeKind::kDelete) return Whiteout(rel);
    return Entry(c.kind, rel, *c.st, c.dirfd, std::string(c.name));
  }

 private:
  Status Whiteout(std::string_view rel) {
    size_t slash = rel.rfind('/');
    std::string name = slash == std::string_view::npos
                           ? kWhiteoutPrefix + std::string(rel)
                           : std::string(rel.substr(0, slash + 1)) + kWhiteoutPrefix +
                                 std::string(rel.substr(slash + 1));
    // containerd leaves the header format to Go's tar writer, which then rounds the mtime to
    // the nearest second, drops atime/ctime and writes plain ustar where it can.
    TarHeader h;
    h.name = std::move(name);
    h.type = '0';
    h.mtime = RoundSeconds(whiteout_time_);
    h.ustar_if_possible = true;
    RETURN_IF_ERROR(IncludeParents(h));
    return tw_.WriteHeader(h);
  }

  // `dirfd`/`name` locate the entry in upper; for directories reached as parents, dirfd is
  // the directory itself and name is "." (only its xattr is read).
  Status Entry(ChangeKind kind, std::string_view rel, const struct stat& st, int dirfd,
               const std::string& name) {
    if (S_ISSOCK(st.st_mode)) return Status::Ok();  // sockets do not go into layers
    TarHeader h;
    h.name = std::string(rel);
    h.mode = st.st_mode & 07777;
    h.uid = st.st_uid;
    h.gid = st.st_gid;
    h.mtime = st.st_mtim.tv_sec;
    switch (st.st_mode & S_IFMT) {
      case S_IFREG:
        h.type = '0';
        h.size = st.st_size;
        break;
      case S_IFDIR:
        h.type = '5';
        h.name += '/';
        break;
      case S_IFLNK: {
        h.type = '2';
        ASSIGN_OR_RETURN(h.linkname, ReadLinkAt(dirfd, name));
        break;
      }
      case S_IFCHR:
      case S_IFBLK:
        h.type = S_ISCHR(st.st_mode) ? '3' : '4';
        h.devmajor = major(st.st_rdev);
        h.devminor = minor(st.st_rdev);
        break;
      case S_IFIFO:
        h.type = '6';
        break;
      default:
        return InvalidArgument("unknown file type of " + h.name);
    }

    std::vector<std::string> also_links;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      InodeKey key{st.st_dev, st.st_ino};
      if (auto it = link_source_.find(key); it != link_source_.end()) {
        h.type = '1';
        h.linkname = it->second;
        h.size = 0;
      } else if (kind == ChangeKind::kUnmodified) {
        // Unchanged so far; linked from here if another name of the inode changes later.
        pending_links_[key].push_back(h.name);
        return Status::Ok();
      } else {
        link_source_[key] = h.name;
        if (auto p = pending_links_.find(key); p != pending_links_.end()) {
          also_links = std::move(p->second);
          pending_links_.erase(p);
        }
      }
    } else if (kind == ChangeKind::kUnmodified) {
      return Status::Ok();
    }

    ASSIGN_OR_RETURN(std::string cap, Capability(dirfd, name));
    if (!cap.empty()) h.pax[kCapabilityRecord] = std::move(cap);

    RETURN_IF_ERROR(IncludeParents(h));
    RETURN_IF_ERROR(tw_.WriteHeader(h));
    if (h.type == '0' && h.size > 0) RETURN_IF_ERROR(CopyData(dirfd, name, st, h.size));

    for (std::string& extra : also_links) {
      TarHeader l = h;
      l.name = std::move(extra);
      l.type = '1';
      l.linkname = h.name;
      l.size = 0;
      RETURN_IF_ERROR(IncludeParents(l));
      RETURN_IF_ERROR(tw_.WriteHeader(l));
    }
    return Status::Ok();
  }

  // Writes the parent directories of `h` not written yet, outermost first. A loop, not
  // recursion through Entry: the chain is as long as the tree is deep. The first missing
  // ancestor is opened from the root, each next one from the one before (O(depth) opens).
  Status IncludeParents(const TarHeader& h) {
    std::string name = h.name;
    while (!name.empty() && name.back() == '/') name.pop_back();
    std::vector<std::string> missing;  // innermost first
    for (std::string p = name;;) {
      size_t slash = p.rfind('/');
      if (slash == std::string::npos) break;
      p.resize(slash);
      if (added_dirs_.contains(p)) break;
      missing.push_back(p);
    }
    UniqueFd cur;
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      const std::string& parent = *it;
      if (!cur.valid()) {
        ASSIGN_OR_RETURN(cur, OpenDirBeneath(upper_root_, parent));
      } else {
        std::string base = parent.substr(parent.rfind('/') + 1);
        int fd = ::openat(cur.get(), base.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return StatusFromErrno(errno, "open " + parent);
        cur = UniqueFd(fd);
      }
      struct stat st;
      if (::fstat(cur.get(), &st) != 0) return StatusFromErrno(errno, "stat " + parent);
      added_dirs_.insert(parent);  // before Entry: its own IncludeParents finds it written
      RETURN_IF_ERROR(Entry(ChangeKind::kModify, parent, st, cur.get(), "."));
    }
    if (h.type == '5') added_dirs_.insert(name);
    return Status::Ok();
  }

  Status CopyData(int dirfd, const std::string& name, const struct stat& st, int64_t size) {
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return StatusFromErrno(errno, "open " + name);
    UniqueFd f(fd);
    struct stat now;
    if (::fstat(fd, &now) != 0) return StatusFromErrno(errno, "fstat " + name);
    if (!S_ISREG(now.st_mode) || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
      return FailedPrecondition(name + " changed while reading");
    }
    buf_.resize(kCopyChunk);
    int64_t left = size;
    for (;;) {
      // One byte more than expected at the end tells a file that grew from one that did not.
      size_t want = static_cast<size_t>(std::min<int64_t>(left + 1, kCopyChunk));
      ssize_t n = ::read(fd, buf_.data(), want);
      if (n < 0) {
        if (errno == EINTR) continue;
        return StatusFromErrno(errno, "read " + name);
      }
      if (n == 0) break;
      if (n > left) return FailedPrecondition(name + " changed while reading (grew)");
      RETURN_IF_ERROR(tw_.WriteData(std::string_view(buf_.data(), static_cast<size_t>(n))));
      left -= n;
    }
    if (left != 0) return FailedPrecondition(name + " changed while reading (shrank)");
    return Status::Ok();
  }

  static int64_t RoundSeconds(int64_t nanos) {
    int64_t s = nanos / 1000000000, r = nanos % 1000000000;
    if (r < 0) {
      r += 1000000000;
      --s;
    }
    return r >= 500000000 ? s + 1 : s;
  }

  int upper_root_;
  TarWriter& tw_;
  int64_t whiteout_time_;
  std::map<InodeKey, std::string> link_source_;                 // inode → name carrying data
  std::map<InodeKey, std::vector<std::string>> pending_links_;  // unchanged names, in order
  std::set<std::string> added_dirs_;
  std::vector<char> buf_;
};

}  // namespace

Result<Compression> DiffCompression(std::string_view media_type) {
  if (media_type == "application/vnd.oci.image.layer.v1.tar") return Compression::kNone;
  if (media_type == "application/vnd.oci.image.layer.v1.tar+gzip") return Compression::kGzip;
  if (media_type == "application/vnd.oci.image.layer.v1.tar+zstd") return Compression::kZstd;
  return Err(Code::kUnimplemented, "unsupported diff media type: " + std::string(media_type));
}

Result<DiffResult> WriteDiff(const std::string& lower, const std::string& upper,
                             const ByteSink& out, const DiffOptions& opts) {
  int fd = ::open(upper.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(StatusFromErrno(errno, "open " + upper));
  UniqueFd upper_root(fd);

  Chunker chunker(out);
  std::unique_ptr<Encoder> enc;
  switch (opts.compression) {
    case Compression::kNone:
      enc = std::make_unique<PlainEncoder>(chunker);
      break;
    case Compression::kGzip:
      enc = std::make_unique<GzipEncoder>(chunker);
      break;
    case Compression::kZstd:
      enc = std::make_unique<ZstdEncoder>(chunker);
      break;
    default:
      return Err(Code::kInvalidArgument, "no compression chosen for the diff");
  }
  content::Sha256 diff_id;
  int64_t tar_size = 0;
  TarWriter tw([&](std::string_view bytes) {
    diff_id.Update(bytes);
    tar_size += static_cast<int64_t>(bytes.size());
    return enc->Write(bytes);
  });
  LayerWriter lw(upper_root.get(), tw, opts.whiteout_time != 0 ? opts.whiteout_time : NowNanos());
  RETURN_IF_ERROR(Changes(
      lower, upper, [&](const Change& c) { return lw.Handle(c); }, opts.cancelled));
  RETURN_IF_ERROR(tw.Close());
  RETURN_IF_ERROR(enc->Finish());
  return DiffResult{.uncompressed_digest = diff_id.Digest(),
                    .uncompressed_size = tar_size,
                    .size = chunker.total()};
}

}  // namespace berth::diff
