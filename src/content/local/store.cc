#include "content/local/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/mountinfo.h"
#include "content/digest.h"

namespace berth::content {
namespace {

constexpr char kRefFile[] = "ref";
constexpr char kDataFile[] = "data";
constexpr char kStartedAtFile[] = "startedat";
constexpr char kUpdatedAtFile[] = "updatedat";
constexpr char kTotalFile[] = "total";
constexpr char kStagingPrefix[] = ".tmp-";
constexpr size_t kHashBuffer = 1 << 20;

int64_t StatMtimeNanos(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// Go's time.MarshalText (RFC 3339 with nanoseconds, trailing zeros trimmed), always UTC.
std::string FormatTime(int64_t nanos) {
  time_t secs = static_cast<time_t>(nanos / 1000000000);
  int64_t frac = nanos % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    --secs;
  }
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (frac != 0) {
    char f[16];
    snprintf(f, sizeof f, ".%09lld", static_cast<long long>(frac));
    std::string fs = f;
    while (fs.back() == '0') fs.pop_back();
    out += fs;
  }
  return out + "Z";
}

// Parses what FormatTime writes, and RFC 3339 offsets as Go writes them for local time.
std::optional<int64_t> ParseTime(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::string s(text);
  struct tm tm {};
  int consumed = 0;
  if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      consumed != 19) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  size_t pos = 19;
  int64_t frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 9) {
        frac = frac * 10 + (s[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 9; ++digits) frac *= 10;
  }
  int64_t offset = 0;
  if (pos < s.size() && s[pos] == 'Z') {
    ++pos;
  } else if (pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':') {
    int hh = 0, mm = 0;
    if (sscanf(s.c_str() + pos + 1, "%2d:%2d", &hh, &mm) != 2) return std::nullopt;
    offset = (hh * 3600 + mm * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  time_t secs = timegm(&tm);
  return (static_cast<int64_t>(secs) - offset) * 1000000000 + frac;
}

Result<std::string> ReadFileAt(int dirfd, const char* name, size_t max_size = 4096) {
  UniqueFd fd(::openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, std::string("open ") + name));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(StatusFromErrno(errno, std::string("read ") + name));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size) {
      return std::unexpected(berth::Status(Code::kDataLoss, std::string(name) + " is too large"));
    }
  }
  return out;
}

berth::Status WriteAll(Env& env, int fd, std::string_view data, int64_t offset,
                       const std::string& what) {
  while (!data.empty()) {
    ssize_t n = env.PWrite(fd, data.data(), data.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return StatusFromErrno(errno, "write " + what);
    }
    data.remove_prefix(static_cast<size_t>(n));
    offset += n;
  }
  return berth::Status::Ok();
}

berth::Status WriteFileAt(Env& env, int dirfd, const std::string& name, std::string_view data) {
  UniqueFd fd(env.OpenAt(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                         0600));
  if (!fd.valid()) return StatusFromErrno(errno, "create " + name);
  return WriteAll(env, fd.get(), data, 0, name);
}

// Replaces `name` in dirfd atomically (temp file + rename). No fsync: these are small
// descriptive files whose loss only makes recovery fall back to the data file's mtime.
berth::Status ReplaceFileAt(Env& env, int dirfd, const std::string& name, std::string_view data) {
  std::string tmp = name + ".tmp";
  RETURN_IF_ERROR(WriteFileAt(env, dirfd, tmp, data));
  if (env.RenameAt2(dirfd, tmp.c_str(), dirfd, name.c_str(), 0) != 0) {
    berth::Status s = StatusFromErrno(errno, "rename " + tmp);
    env.UnlinkAt(dirfd, tmp.c_str(), 0);
    return s;
  }
  return berth::Status::Ok();
}

// Removes `name` (a file, or a directory tree) below dirfd without following symlinks.
berth::Status RemoveTreeAt(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0) return berth::Status::Ok();
  if (errno == ENOENT) return NotFound(name);
  if (errno != EISDIR && errno != EPERM) return StatusFromErrno(errno, "remove " + name);
  UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sub.valid()) return StatusFromErrno(errno, "open " + name);
  int dup_fd = ::fcntl(sub.get(), F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return StatusFromErrno(errno, "dup " + name);
  DIR* dir = ::fdopendir(dup_fd);
  if (!dir) {
    ::close(dup_fd);
    return StatusFromErrno(errno, "opendir " + name);
  }
  std::vector<std::string> entries;
  while (dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    entries.emplace_back(e->d_name);
  }
  ::closedir(dir);
  for (const auto& e : entries) {
    berth::Status s = RemoveTreeAt(sub.get(), e);
    if (!s.ok() && s.code() != Code::kNotFound) return s;
  }
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return StatusFromErrno(errno, "remove " + name);
  }
  return berth::Status::Ok();
}

// Names in a directory, without "." and "..".
Result<std::vector<std::string>> ListDir(int dirfd, const std::string& what) {
  int dup_fd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return std::unexpected(StatusFromErrno(errno, "dup " + what));
  DIR* dir = ::fdopendir(dup_fd);
  if (!dir) {
    ::close(dup_fd);
    return std::unexpected(StatusFromErrno(errno, "opendir " + what));
  }
  ::rewinddir(dir);
  std::vector<std::string> out;
  errno = 0;
  while (dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    out.emplace_back(e->d_name);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return std::unexpected(StatusFromErrno(err, "readdir " + what));
  return out;
}

Result<UniqueFd> OpenDir(const std::string& path) {
  RETURN_IF_ERROR(EnsureDir(path, 0700));
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "open " + path));
  return fd;
}

std::string IngestName(std::string_view ref) { return DigestOf(ref).substr(kSha256Prefix.size()); }

std::string RandomSuffix() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  for (int i = 0; i < 12; ++i) out += kChars[rng() % (sizeof(kChars) - 1)];
  return out;
}

class LocalReader final : public ReaderAt {
 public:
  LocalReader(UniqueFd fd, int64_t size) : fd_(std::move(fd)), size_(size) {}
  int64_t Size() const override { return size_; }
  Result<size_t> ReadAt(char* buf, size_t n, int64_t offset) override {
    if (offset < 0) return std::unexpected(InvalidArgument("negative read offset"));
    size_t done = 0;
    while (done < n && offset + static_cast<int64_t>(done) < size_) {
      ssize_t r = ::pread(fd_.get(), buf + done, n - done, offset + static_cast<off_t>(done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return std::unexpected(StatusFromErrno(errno, "read blob"));
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }

 private:
  UniqueFd fd_;
  int64_t size_;
};

}  // namespace

// ---- Writer ------------------------------------------------------------------------------

class LocalWriter final : public Writer {
 public:
  LocalWriter(LocalStore* store, std::string ref, std::string name, UniqueFd dir_fd,
              UniqueFd data_fd, Sha256 hash, IngestStatus st)
      : store_(store),
        ref_(std::move(ref)),
        name_(std::move(name)),
        dir_fd_(std::move(dir_fd)),
        data_fd_(std::move(data_fd)),
        hash_(std::move(hash)),
        offset_(st.offset),
        total_(st.total),
        started_at_(st.started_at),
        updated_at_(st.updated_at) {}

  ~LocalWriter() override {
    if (berth::Status s = Close(); !s.ok()) {
      spdlog::warn("content: close ingest ref={}: {}", ref_, s.ToString());
    }
  }

  Result<IngestStatus> Status() const override {
    IngestStatus st;
    st.ref = ref_;
    st.offset = offset_;
    st.total = total_;
    st.started_at = started_at_;
    st.updated_at = updated_at_;
    return st;
  }

  std::string Digest() const override { return committed_.empty() ? hash_.Digest() : committed_; }

  berth::Status Write(std::string_view data) override {
    RETURN_IF_ERROR(CheckOpen());
    if (data.empty()) return berth::Status::Ok();
    berth::Status s = WriteAll(env(), data_fd_.get(), data, offset_, "ingest " + ref_);
    if (!s.ok()) {
      // All or nothing: drop a partial append so data, offset and hash stay in step.
      if (env().FTruncate(data_fd_.get(), offset_) != 0) {
        spdlog::warn("content: truncate ingest ref={} after failed write: {}", ref_,
                     std::strerror(errno));
      }
      return WithFilesystem(std::move(s), DataPath());
    }
    hash_.Update(data);
    offset_ += static_cast<int64_t>(data.size());
    updated_at_ = store_->clock_->NowNanos();
    return berth::Status::Ok();
  }

  berth::Status Truncate(int64_t size) override {
    RETURN_IF_ERROR(CheckOpen());
    if (size != 0) return InvalidArgument("truncate ingest " + ref_ + ": unsupported size");
    if (env().FTruncate(data_fd_.get(), 0) != 0) {
      return StatusFromErrno(errno, "truncate ingest " + ref_);
    }
    hash_.Reset();
    offset_ = 0;
    updated_at_ = store_->clock_->NowNanos();
    return berth::Status::Ok();
  }

  berth::Status Sync() override {
    RETURN_IF_ERROR(CheckOpen());
    if (env().FSync(data_fd_.get()) != 0) return StatusFromErrno(errno, "fsync ingest " + ref_);
    return berth::Status::Ok();
  }

  berth::Status Commit(int64_t size, std::string_view expected, const Labels&) override {
    RETURN_IF_ERROR(CheckOpen());
    berth::Status s = WithFilesystem(DoCommit(size, expected), DataPath());
    if (!s.ok() && !done_) {
      // Nothing was published: leave the ingest resumable, release the ref.
      if (berth::Status c = Close(); !c.ok()) {
        spdlog::warn("content: close ingest ref={} after failed commit: {}", ref_, c.ToString());
      }
    }
    return s;
  }

  berth::Status Close() override {
    if (done_) return berth::Status::Ok();
    done_ = true;
    berth::Status out;
    if (env().FSync(data_fd_.get()) != 0) {
      out = StatusFromErrno(errno, "fsync ingest " + ref_);
    }
    data_fd_.reset();
    if (berth::Status s = ReplaceFileAt(env(), dir_fd_.get(), kUpdatedAtFile, FormatTime(updated_at_));
        !s.ok() && out.ok()) {
      out = s;
    }
    dir_fd_.reset();
    store_->Unlock(ref_);
    return out;
  }

 private:
  Env& env() const { return *store_->env_; }
  std::string DataPath() const {
    return store_->root_ + "/ingest/" + name_ + "/" + kDataFile;
  }

  berth::Status CheckOpen() const {
    if (done_) return FailedPrecondition("ingest " + ref_ + ": writer is closed");
    return berth::Status::Ok();
  }

  berth::Status DoCommit(int64_t size, std::string_view expected) {
    struct stat st;
    if (::fstat(data_fd_.get(), &st) != 0) return StatusFromErrno(errno, "stat ingest " + ref_);
    if (st.st_size != offset_) {
      return berth::Status(Code::kDataLoss,
                           "ingest " + ref_ + " holds " + std::to_string(st.st_size) +
                               " bytes, the writer wrote " + std::to_string(offset_));
    }
    if (size > 0 && size != offset_) {
      return FailedPrecondition("unexpected commit size " + std::to_string(offset_) +
                                ", expected " + std::to_string(size));
    }
    std::string dgst = hash_.Digest();
    if (!expected.empty() && expected != dgst) {
      return FailedPrecondition("unexpected commit digest " + dgst + ", expected " +
                                std::string(expected));
    }
    std::string hex = dgst.substr(kSha256Prefix.size());
    // Read-only and stamped before it becomes visible: nothing writable ever sits in blobs/.
    if (::fchmod(data_fd_.get(), 0444) != 0) return StatusFromErrno(errno, "chmod ingest data");
    int64_t now_nanos = store_->clock_->NowNanos();
    timespec now[2];
    now[0].tv_sec = static_cast<time_t>(now_nanos / 1000000000);
    now[0].tv_nsec = static_cast<long>(now_nanos % 1000000000);
    now[1] = now[0];
    if (::futimens(data_fd_.get(), now) != 0) {
      spdlog::warn("content: set commit time of {}: {}", dgst, std::strerror(errno));
    }
    // Data (usually flushed already by a Sync before the caller's lock) and the new mode/mtime
    // reach the disk before the name does.
    if (env().FSync(data_fd_.get()) != 0) {
      berth::Status err = StatusFromErrno(errno, "fsync ingest " + ref_);
      ::fchmod(data_fd_.get(), 0600);
      return err;
    }
    int rc = env().RenameAt2(dir_fd_.get(), kDataFile, store_->blobs_fd_.get(), hex.c_str(),
                             RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
      // No RENAME_NOREPLACE on this file system: link(2) is just as atomic about EEXIST.
      rc = env().LinkAt(dir_fd_.get(), kDataFile, store_->blobs_fd_.get(), hex.c_str(), 0);
      if (rc == 0) env().UnlinkAt(dir_fd_.get(), kDataFile, 0);
    }
    if (rc != 0) {
      int err = errno;
      if (err == EEXIST) {
        // The same bytes are already committed: drop ours, as containerd does.
        Finish(dgst);
        return AlreadyExists("content " + dgst);
      }
      ::fchmod(data_fd_.get(), 0600);
      return StatusFromErrno(err, "commit ingest " + ref_ + " as " + dgst);
    }
    berth::Status dir_sync;
    if (env().FSync(store_->blobs_fd_.get()) != 0) {
      dir_sync = StatusFromErrno(errno, "fsync blobs directory after committing " + dgst);
    }
    Finish(dgst);
    return dir_sync;
  }

  // The ingest is gone (published or superseded): remove its directory and release the ref.
  void Finish(const std::string& dgst) {
    done_ = true;
    committed_ = dgst;
    data_fd_.reset();
    dir_fd_.reset();
    if (berth::Status s = store_->RemoveIngest(name_); !s.ok() && s.code() != Code::kNotFound) {
      spdlog::warn("content: remove finished ingest ref={}: {}", ref_, s.ToString());
    }
    store_->Unlock(ref_);
  }

  LocalStore* store_;
  std::string ref_;
  std::string name_;
  UniqueFd dir_fd_;
  UniqueFd data_fd_;
  Sha256 hash_;
  int64_t offset_;
  int64_t total_;
  int64_t started_at_;
  int64_t updated_at_;
  bool done_ = false;
  std::string committed_;
};

// ---- Store -------------------------------------------------------------------------------

Result<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& root, Env& env,
                                                     WallClock& clock) {
  std::unique_ptr<LocalStore> s(new LocalStore());
  s->root_ = root;
  s->env_ = &env;
  s->clock_ = &clock;
  RETURN_IF_ERROR(EnsureDir(root, 0700));
  RETURN_IF_ERROR(EnsureDir(root + "/blobs", 0700));
  ASSIGN_OR_RETURN(s->blobs_fd_, OpenDir(root + "/blobs/sha256"));
  ASSIGN_OR_RETURN(s->ingest_fd_, OpenDir(root + "/ingest"));
  RETURN_IF_ERROR(s->Recover());
  return s;
}

LocalStore::~LocalStore() = default;

std::string LocalStore::BlobPathForTest(std::string_view digest) const {
  return root_ + "/blobs/sha256/" + std::string(digest.substr(kSha256Prefix.size()));
}

std::string LocalStore::IngestPathForTest(std::string_view ref) const {
  return root_ + "/ingest/" + IngestName(ref);
}

berth::Status LocalStore::Recover() {
  ASSIGN_OR_RETURN(auto blobs, ListDir(blobs_fd_.get(), root_ + "/blobs/sha256"));
  for (const auto& name : blobs) {
    struct stat st;
    bool regular = ::fstatat(blobs_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   S_ISREG(st.st_mode);
    if (IsSha256Hex(name) && regular) continue;
    spdlog::warn("content: removing stray entry blobs/sha256/{}", name);
    if (berth::Status r = RemoveTreeAt(blobs_fd_.get(), name); !r.ok()) {
      spdlog::warn("content: remove blobs/sha256/{}: {}", name, r.ToString());
    }
  }
  ASSIGN_OR_RETURN(auto ingests, ListDir(ingest_fd_.get(), root_ + "/ingest"));
  int kept = 0;
  for (const auto& name : ingests) {
    std::string why;
    if (!IsSha256Hex(name)) {
      why = name.starts_with(kStagingPrefix) ? "unfinished ingest setup" : "stray entry";
    } else {
      UniqueFd dir(::openat(ingest_fd_.get(), name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      auto entries = dir.valid() ? ListDir(dir.get(), name) : Result<std::vector<std::string>>();
      if (!dir.valid() || !entries) {
        why = "unreadable ingest";
      } else {
        for (const auto& e : *entries) {
          if (e.ends_with(".tmp")) ::unlinkat(dir.get(), e.c_str(), 0);
        }
        auto ref = ReadFileAt(dir.get(), kRefFile, kMaxBackendRefBytes);
        struct stat st;
        if (!ref || IngestName(*ref) != name) {
          why = "ingest without a valid ref";
        } else if (::fstatat(dir.get(), kDataFile, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                   !S_ISREG(st.st_mode)) {
          why = "ingest without data (committed or never written)";
        }
      }
    }
    if (why.empty()) {
      ++kept;
      continue;
    }
    spdlog::warn("content: removing ingest/{}: {}", name, why);
    if (berth::Status r = RemoveTreeAt(ingest_fd_.get(), name); !r.ok()) {
      spdlog::warn("content: remove ingest/{}: {}", name, r.ToString());
    }
  }
  if (env_->FSync(blobs_fd_.get()) != 0 || env_->FSync(ingest_fd_.get()) != 0) {
    return StatusFromErrno(errno, "fsync content directories under " + root_);
  }
  spdlog::info("content store {}: {} blobs, {} resumable ingests", root_, blobs.size(), kept);
  return berth::Status::Ok();
}

berth::Status LocalStore::TryLock(const std::string& ref) {
  std::lock_guard lock(mu_);
  auto it = locks_.find(ref);
  if (it != locks_.end()) {
    int64_t held = clock_->NowNanos() - it->second;
    char dur[32];
    snprintf(dur, sizeof dur, "%.3fs", static_cast<double>(held) / 1e9);
    return Unavailable("ref " + ref + " locked for " + dur + " (since " + FormatTime(it->second) +
                       ")");
  }
  locks_.emplace(ref, clock_->NowNanos());
  return berth::Status::Ok();
}

void LocalStore::Unlock(const std::string& ref) {
  std::lock_guard lock(mu_);
  locks_.erase(ref);
}

// No directory fsync here or when an ingest is created: an ingest lost to a power cut is
// recreated by the client, and a removal that did not persist is cleaned up by Recover.
berth::Status LocalStore::RemoveIngest(const std::string& name) {
  return RemoveTreeAt(ingest_fd_.get(), name);
}

Result<BlobInfo> LocalStore::Info(std::string_view digest) {
  ASSIGN_OR_RETURN(std::string hex, DigestHex(digest));
  struct stat st;
  if (::fstatat(blobs_fd_.get(), hex.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::unexpected(NotFound("content " + std::string(digest)));
    return std::unexpected(StatusFromErrno(errno, "stat blob " + std::string(digest)));
  }
  if (!S_ISREG(st.st_mode)) {
    return std::unexpected(Internal("blob " + std::string(digest) + " is not a regular file"));
  }
  return BlobInfo{std::string(digest), st.st_size, StatMtimeNanos(st)};
}

Result<std::unique_ptr<ReaderAt>> LocalStore::OpenReader(std::string_view digest) {
  ASSIGN_OR_RETURN(std::string hex, DigestHex(digest));
  UniqueFd fd(::openat(blobs_fd_.get(), hex.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::unexpected(NotFound("content " + std::string(digest)));
    return std::unexpected(StatusFromErrno(errno, "open blob " + std::string(digest)));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return std::unexpected(StatusFromErrno(errno, "stat blob " + std::string(digest)));
  }
  if (!S_ISREG(st.st_mode)) {
    return std::unexpected(Internal("blob " + std::string(digest) + " is not a regular file"));
  }
  return std::make_unique<LocalReader>(std::move(fd), st.st_size);
}

berth::Status LocalStore::Delete(std::string_view digest) {
  ASSIGN_OR_RETURN(std::string hex, DigestHex(digest));
  if (::unlinkat(blobs_fd_.get(), hex.c_str(), 0) != 0) {
    if (errno == ENOENT) return NotFound("content " + std::string(digest));
    return StatusFromErrno(errno, "delete blob " + std::string(digest));
  }
  return berth::Status::Ok();
}

berth::Status LocalStore::Walk(const std::function<berth::Status(const BlobInfo&)>& fn) {
  ASSIGN_OR_RETURN(auto names, ListDir(blobs_fd_.get(), root_ + "/blobs/sha256"));
  for (const auto& name : names) {
    if (!IsSha256Hex(name)) continue;
    struct stat st;
    if (::fstatat(blobs_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // deleted while walking
      return StatusFromErrno(errno, "stat blob " + name);
    }
    if (!S_ISREG(st.st_mode)) continue;
    RETURN_IF_ERROR(
        fn(BlobInfo{std::string(kSha256Prefix) + name, st.st_size, StatMtimeNanos(st)}));
  }
  return berth::Status::Ok();
}

Result<IngestStatus> LocalStore::ReadIngest(const std::string& name, std::string_view want_ref) {
  UniqueFd dir(
      ::openat(ingest_fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) {
    if (errno == ENOENT) return std::unexpected(NotFound("ingest ref " + Quote(want_ref)));
    return std::unexpected(StatusFromErrno(errno, "open ingest " + name));
  }
  ASSIGN_OR_RETURN(std::string ref, ReadFileAt(dir.get(), kRefFile, kMaxBackendRefBytes));
  if (!want_ref.empty() && ref != want_ref) {
    return std::unexpected(NotFound("ingest ref " + Quote(want_ref)));
  }
  struct stat st;
  if (::fstatat(dir.get(), kDataFile, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::unexpected(NotFound("ingest ref " + Quote(ref)));
    return std::unexpected(StatusFromErrno(errno, "stat ingest data " + name));
  }
  IngestStatus out;
  out.ref = ref;
  out.offset = st.st_size;
  int64_t mtime = StatMtimeNanos(st);
  auto started = ReadFileAt(dir.get(), kStartedAtFile);
  auto parsed_started = started ? ParseTime(*started) : std::nullopt;
  out.started_at = parsed_started.value_or(mtime);
  auto updated = ReadFileAt(dir.get(), kUpdatedAtFile);
  auto parsed_updated = updated ? ParseTime(*updated) : std::nullopt;
  out.updated_at = std::max(parsed_updated.value_or(mtime), mtime);
  if (auto total = ReadFileAt(dir.get(), kTotalFile); total) {
    char* end = nullptr;
    long long v = std::strtoll(total->c_str(), &end, 10);
    if (end != total->c_str() && v > 0) out.total = v;
  }
  return out;
}

Result<IngestStatus> LocalStore::Status(std::string_view ref) {
  if (ref.empty()) return std::unexpected(InvalidArgument("ref must not be empty"));
  return ReadIngest(IngestName(ref), ref);
}

berth::Status LocalStore::WalkIngests(const std::function<berth::Status(const IngestStatus&)>& fn) {
  ASSIGN_OR_RETURN(auto names, ListDir(ingest_fd_.get(), root_ + "/ingest"));
  for (const auto& name : names) {
    if (!IsSha256Hex(name)) continue;
    auto st = ReadIngest(name, "");
    if (!st) {
      if (st.error().code() == Code::kNotFound) continue;  // finished while walking
      return st.error();
    }
    RETURN_IF_ERROR(fn(*st));
  }
  return berth::Status::Ok();
}

berth::Status LocalStore::Abort(std::string_view ref) {
  if (ref.empty()) return InvalidArgument("ref must not be empty");
  std::string r(ref);
  RETURN_IF_ERROR(TryLock(r));
  std::string name = IngestName(ref);
  berth::Status s =
      ReadIngest(name, ref).has_value() ? RemoveIngest(name) : NotFound("ingest ref " + Quote(ref));
  Unlock(r);
  return s;
}

Result<std::unique_ptr<Writer>> LocalStore::OpenWriter(std::string_view ref_view, int64_t total) {
  if (ref_view.empty()) return std::unexpected(InvalidArgument("ref must not be empty"));
  if (ref_view.size() > kMaxBackendRefBytes) {
    // Longer refs could not be read back from the ingest's `ref` file.
    return std::unexpected(InvalidArgument("ref is " + std::to_string(ref_view.size()) +
                                           " bytes long, longer than the " +
                                           std::to_string(kMaxBackendRefBytes) + " allowed"));
  }
  std::string ref(ref_view);
  {
    thread_local std::mt19937 rng(std::random_device{}());
    berth::Status locked;
    for (int attempt = 0; attempt < lock_attempts_; ++attempt) {
      locked = TryLock(ref);
      if (locked.ok()) break;
      if (attempt + 1 < lock_attempts_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % (1u << attempt)));
      }
    }
    RETURN_IF_ERROR(locked);
  }
  struct Unlocker {
    LocalStore* s;
    std::string ref;
    bool armed = true;
    ~Unlocker() {
      if (armed) s->Unlock(ref);
    }
  } unlocker{this, ref};

  std::string name = IngestName(ref);
  Sha256 hash;
  IngestStatus st;
  st.ref = ref;

  // Resume an existing ingest when it is intact and agrees on the total.
  if (auto existing = ReadIngest(name, ref); existing) {
    bool restart = total > 0 && existing->total > 0 && total != existing->total;
    UniqueFd dir(
        ::openat(ingest_fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd data;
    if (dir.valid()) {
      data.reset(::openat(dir.get(), kDataFile, O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    }
    if (dir.valid() && data.valid()) {
      if (restart) {
        spdlog::info("content: ingest ref={} restarts: total {} differs from stored {}", ref, total,
                     existing->total);
        if (env_->FTruncate(data.get(), 0) != 0) {
          return std::unexpected(StatusFromErrno(errno, "truncate ingest " + ref));
        }
        st.started_at = st.updated_at = clock_->NowNanos();
        RETURN_IF_ERROR(
            ReplaceFileAt(*env_, dir.get(), kStartedAtFile, FormatTime(st.started_at)));
        RETURN_IF_ERROR(
            ReplaceFileAt(*env_, dir.get(), kUpdatedAtFile, FormatTime(st.updated_at)));
        RETURN_IF_ERROR(ReplaceFileAt(*env_, dir.get(), kTotalFile, std::to_string(total)));
        st.total = total;
      } else {
        std::string buf(kHashBuffer, '\0');
        int64_t off = 0;
        for (;;) {
          ssize_t n = ::pread(data.get(), buf.data(), buf.size(), off);
          if (n < 0) {
            if (errno == EINTR) continue;
            return std::unexpected(StatusFromErrno(errno, "read ingest " + ref));
          }
          if (n == 0) break;
          hash.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
          off += n;
        }
        st.offset = off;
        st.started_at = existing->started_at;
        st.updated_at = existing->updated_at;
        st.total = existing->total;
        if (st.total == 0 && total > 0) {
          RETURN_IF_ERROR(ReplaceFileAt(*env_, dir.get(), kTotalFile, std::to_string(total)));
          st.total = total;
        }
        spdlog::debug("content: resuming ingest ref={} at offset {}", ref, st.offset);
      }
      unlocker.armed = false;
      return std::make_unique<LocalWriter>(this, ref, name, std::move(dir), std::move(data),
                                           std::move(hash), st);
    }
  } else if (existing.error().code() != Code::kNotFound) {
    spdlog::warn("content: ingest ref={} unreadable ({}); starting over", ref,
                 existing.error().ToString());
  }
  // Anything left under the name is broken; start clean.
  if (berth::Status r = RemoveTreeAt(ingest_fd_.get(), name);
      !r.ok() && r.code() != Code::kNotFound) {
    return std::unexpected(r.Wrap("remove broken ingest " + ref));
  }

  // Assemble the new ingest under a staging name, then rename it into place.
  std::string staging = std::string(kStagingPrefix) + name + "-" + RandomSuffix();
  if (env_->MkdirAt(ingest_fd_.get(), staging.c_str(), 0700) != 0) {
    return std::unexpected(
        StatusFromErrnoAt(errno, "create ingest " + ref, root_ + "/ingest/" + staging));
  }
  auto setup = [&]() -> Result<std::pair<UniqueFd, UniqueFd>> {
    UniqueFd dir(::openat(ingest_fd_.get(), staging.c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir.valid()) return std::unexpected(StatusFromErrno(errno, "open ingest " + ref));
    st.started_at = st.updated_at = clock_->NowNanos();
    st.total = total > 0 ? total : 0;
    RETURN_IF_ERROR(WriteFileAt(*env_, dir.get(), kRefFile, ref));
    RETURN_IF_ERROR(WriteFileAt(*env_, dir.get(), kStartedAtFile, FormatTime(st.started_at)));
    RETURN_IF_ERROR(WriteFileAt(*env_, dir.get(), kUpdatedAtFile, FormatTime(st.updated_at)));
    if (total > 0) {
      RETURN_IF_ERROR(WriteFileAt(*env_, dir.get(), kTotalFile, std::to_string(total)));
    }
    UniqueFd data(env_->OpenAt(dir.get(), kDataFile,
                               O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!data.valid()) return std::unexpected(StatusFromErrno(errno, "create ingest data"));
    if (env_->RenameAt2(ingest_fd_.get(), staging.c_str(), ingest_fd_.get(), name.c_str(), 0) !=
        0) {
      return std::unexpected(StatusFromErrno(errno, "publish ingest " + ref));
    }
    return std::make_pair(std::move(dir), std::move(data));
  };
  auto fds = setup();
  if (!fds) {
    (void)RemoveTreeAt(ingest_fd_.get(), staging);
    return std::unexpected(WithFilesystem(fds.error(), root_ + "/ingest/" + staging));
  }
  unlocker.armed = false;
  return std::make_unique<LocalWriter>(this, ref, name, std::move(fds->first),
                                       std::move(fds->second), std::move(hash), st);
}

}  // namespace berth::content
