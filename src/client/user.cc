#include "client/user.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <vector>

#include "common/validate.h"

namespace berth::client {
namespace {

// /etc/passwd and /etc/group are small; a bigger one is read up to this much.
constexpr size_t kMaxRootFile = 4u << 20;

// A passwd/group field that holds an id; entries with anything else are skipped.
std::optional<uint32_t> FieldId(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Lines of an /etc/passwd or /etc/group file, split on ':'.
std::vector<std::vector<std::string>> ColonFile(const std::string& data) {
  std::vector<std::vector<std::string>> out;
  size_t start = 0;
  while (start < data.size()) {
    size_t end = data.find('\n', start);
    if (end == std::string::npos) end = data.size();
    std::string line = data.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    size_t f = 0;
    while (true) {
      size_t c = line.find(':', f);
      fields.push_back(line.substr(f, c == std::string::npos ? std::string::npos : c - f));
      if (c == std::string::npos) break;
      f = c + 1;
    }
    out.push_back(std::move(fields));
  }
  return out;
}

// `rel` (relative) under `root`, resolved as if `root` were "/"; "" when it does not exist.
Result<std::string> ReadInRoot(const std::string& root, const char* rel) {
  int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return std::unexpected(StatusFromErrno(errno, "open " + root));
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, dir, rel, &how, sizeof how));
  int err = errno;
  ::close(dir);
  if (fd < 0) {
    if (err == ENOENT || err == ENOTDIR) return std::string();
    return std::unexpected(StatusFromErrno(err, std::string("open ") + rel + " in " + root));
  }
  struct stat st {};
  std::string data;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    char buf[8192];
    ssize_t n;
    while (data.size() < kMaxRootFile && (n = ::read(fd, buf, sizeof buf)) > 0) {
      data.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return data;
}

}  // namespace

Result<std::optional<uint32_t>> ParseNumericId(std::string_view s, std::string_view what) {
  std::string_view digits = s;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) digits.remove_prefix(1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::optional<uint32_t>();  // a name
  }
  // CVE-2024-40635: a number is never a name, however big. Reject, do not fall back.
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (s[0] == '-' || ec != std::errc() || p != digits.data() + digits.size() || v > kMaxId) {
    return Err(Code::kInvalidArgument, std::string(what) + " ID " + Quote(s) +
                                           " is out of range (0 to " + std::to_string(kMaxId) +
                                           ")");
  }
  return std::optional<uint32_t>(v);
}

Result<UserRef> ParseUser(std::string_view user) {
  UserRef ref;
  size_t colon = user.find(':');
  ref.user = std::string(user.substr(0, colon));
  if (colon != std::string_view::npos) {
    ref.group = std::string(user.substr(colon + 1));
    if (ref.group.find(':') != std::string::npos) {
      return Err(Code::kInvalidArgument, "invalid USER value " + Quote(user));
    }
  }
  if (ref.user.empty()) return Err(Code::kInvalidArgument, "invalid USER value " + Quote(user));
  ASSIGN_OR_RETURN(ref.uid, ParseNumericId(ref.user, "user"));
  ASSIGN_OR_RETURN(ref.gid, ParseNumericId(ref.group, "group"));
  return ref;
}

Result<std::optional<UserIds>> NumericUserIds(std::string_view user) {
  ASSIGN_OR_RETURN(UserRef ref, ParseUser(user));
  if (ref.uid && ref.gid) return std::optional<UserIds>(UserIds{*ref.uid, *ref.gid});
  return std::optional<UserIds>();
}

Result<UserIds> ResolveUser(std::string_view user, const RootFileReader& read) {
  ASSIGN_OR_RETURN(UserRef ref, ParseUser(user));
  if (ref.uid && ref.gid) return UserIds{*ref.uid, *ref.gid};
  std::optional<uint32_t> uid, gid;
  // A lone uid still takes its primary group from passwd (containerd's WithUserID); a uid
  // with an explicit group needs no passwd at all.
  if (!ref.uid || ref.group.empty()) {
    ASSIGN_OR_RETURN(std::string passwd, read("etc/passwd"));
    for (const auto& f : ColonFile(passwd)) {
      if (f.size() < 4) continue;
      auto fu = FieldId(f[2]);
      auto fg = FieldId(f[3]);
      if (!fu || !fg) continue;
      // Numeric users match on the uid field only, names on the name field only.
      if (ref.uid ? *fu == *ref.uid : f[0] == ref.user) {
        uid = *fu;
        gid = *fg;
        break;
      }
    }
  }
  if (!uid) {
    if (!ref.uid) {
      return Err(Code::kNotFound, "no user " + Quote(ref.user) + " in the image's /etc/passwd");
    }
    uid = *ref.uid;
    gid = 0;
  }
  if (ref.gid) {
    gid = *ref.gid;
  } else if (!ref.group.empty()) {
    ASSIGN_OR_RETURN(std::string group, read("etc/group"));
    std::optional<uint32_t> found;
    for (const auto& f : ColonFile(group)) {
      if (f.size() >= 3 && f[0] == ref.group) {
        found = FieldId(f[2]);
        break;
      }
    }
    if (!found) {
      return Err(Code::kNotFound, "no group " + Quote(ref.group) + " in the image's /etc/group");
    }
    gid = *found;
  }
  return UserIds{*uid, *gid};
}

Result<UserIds> ResolveUserInRoot(const std::string& root, std::string_view user) {
  return ResolveUser(user, [&root](const char* rel) { return ReadInRoot(root, rel); });
}

}  // namespace berth::client
