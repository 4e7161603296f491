// Layer creation (diff::Changes, diff::WriteDiff, the tar writer): every layer made here is
// applied with diff::ApplyLayer onto a fresh copy of the lower tree and the result compared
// with the upper tree — content, modes, owners, times, symlinks, hardlinks, devices, the
// capability xattr, deletions. Entry lists are read back with libarchive, a reader we did not
// write.
#include "diff/compare.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../common/deep_tree.h"
#include "common/fs.h"
#include "common/mount.h"
#include "content/digest.h"
#include "string_reader.h"
#include "diff/apply.h"

namespace berth::diff {
namespace {

namespace fs = std::filesystem;

constexpr char kTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr int64_t kT = 1700000000;  // a whole-second mtime used for "unchanged" files
constexpr int64_t kWhiteoutTime = 1712345678123456789;

// A valid VFS_CAP_REVISION_2 value with the effective flag and CAP_NET_BIND_SERVICE.
std::string CapValue() {
  std::string v(20, '\0');
  v[0] = 1;     // VFS_CAP_FLAGS_EFFECTIVE (little-endian magic_etc 0x02000001)
  v[3] = 2;     // VFS_CAP_REVISION_2
  v[5] = 0x04;  // permitted bit 10
  return v;
}

std::string ReadAll(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Builds trees with exact metadata. Paths are relative to `root`.
struct Tree {
  std::string root;

  std::string P(const std::string& rel) const { return root + "/" + rel; }
  void Times(const std::string& rel, int64_t sec, int64_t nsec = 0) const {
    struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
    ASSERT_EQ(::utimensat(AT_FDCWD, P(rel).c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << rel;
  }
  void Own(const std::string& rel, uid_t uid, gid_t gid) const {
    ASSERT_EQ(::lchown(P(rel).c_str(), uid, gid), 0) << rel;
  }
  void Dir(const std::string& rel, mode_t mode = 0755) const {
    ASSERT_EQ(::mkdir(P(rel).c_str(), mode), 0) << rel;
    ASSERT_EQ(::chmod(P(rel).c_str(), mode), 0);
  }
  void File(const std::string& rel, const std::string& data, mode_t mode = 0644, int64_t sec = kT,
            int64_t nsec = 0) const {
    std::ofstream(P(rel), std::ios::binary) << data;
    ASSERT_EQ(::chmod(P(rel).c_str(), mode), 0) << rel;
    Times(rel, sec, nsec);
  }
  void Symlink(const std::string& rel, const std::string& target) const {
    ASSERT_EQ(::symlink(target.c_str(), P(rel).c_str()), 0) << rel;
    Times(rel, kT);
  }
  void Link(const std::string& rel, const std::string& existing) const {
    ASSERT_EQ(::link(P(existing).c_str(), P(rel).c_str()), 0) << rel;
  }
  void Node(const std::string& rel, mode_t mode, dev_t dev = 0) const {
    ASSERT_EQ(::mknod(P(rel).c_str(), mode, dev), 0) << rel << ": " << std::strerror(errno);
    Times(rel, kT);
  }
  void Cap(const std::string& rel) const {
    std::string v = CapValue();
    ASSERT_EQ(::lsetxattr(P(rel).c_str(), "security.capability", v.data(), v.size(), 0), 0)
        << rel << ": " << std::strerror(errno);
  }
  void Socket(const std::string& rel) const {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string p = P(rel);
    ASSERT_LT(p.size(), sizeof addr.sun_path);
    std::memcpy(addr.sun_path, p.c_str(), p.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
  }
};

// Everything the layer must reproduce, one line per path (sockets are not carried, directory
// mtimes are not compared: children being written changes them).
std::map<std::string, std::string> Describe(const std::string& root) {
  std::map<std::string, std::string> out;
  std::map<std::pair<dev_t, ino_t>, std::string> first_name;
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    paths.push_back(it->path());
  }
  std::sort(paths.begin(), paths.end());
  for (const fs::path& p : paths) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISSOCK(st.st_mode)) continue;
    std::string rel = fs::relative(p, root).string();
    std::ostringstream o;
    o << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid;
    if (!S_ISDIR(st.st_mode)) o << " t=" << st.st_mtim.tv_sec;
    if (S_ISREG(st.st_mode)) o << " data=" << content::DigestOf(ReadAll(p)).substr(7, 12);
    if (S_ISLNK(st.st_mode)) o << " -> " << fs::read_symlink(p).string();
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      o << " dev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
    }
    char cap[64];
    ssize_t n = ::lgetxattr(p.c_str(), "security.capability", cap, sizeof cap);
    if (n > 0) o << " cap=" << n;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, fresh] = first_name.try_emplace({st.st_dev, st.st_ino}, rel);
      o << " linkgroup=" << it->second;
    }
    out[rel] = o.str();
  }
  return out;
}

std::string DescribeDiff(const std::map<std::string, std::string>& got,
                         const std::map<std::string, std::string>& want) {
  std::ostringstream o;
  for (const auto& [k, v] : want) {
    auto it = got.find(k);
    if (it == got.end()) {
      o << "missing " << k << " (" << v << ")\n";
    } else if (it->second != v) {
      o << "differs " << k << ": got " << it->second << " want " << v << "\n";
    }
  }
  for (const auto& [k, v] : got) {
    if (!want.contains(k)) o << "extra " << k << " (" << v << ")\n";
  }
  return o.str();
}

struct Entry {
  std::string name;
  char type = 0;  // '0' file, '1' hardlink, '2' symlink, '3' chr, '5' dir, '6' fifo
  unsigned mode = 0;
  int64_t uid = 0, gid = 0, size = 0, mtime = 0, mtime_nsec = 0;
  std::string link;
  std::map<std::string, std::string> xattrs;
};

std::vector<Entry> ListTar(const std::string& tar) {
  std::vector<Entry> out;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_memory(a, tar.data(), tar.size()), ARCHIVE_OK);
  archive_entry* e;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    Entry x;
    x.name = archive_entry_pathname(e);
    x.mode = archive_entry_perm(e);
    x.uid = archive_entry_uid(e);
    x.gid = archive_entry_gid(e);
    x.size = archive_entry_size(e);
    x.mtime = archive_entry_mtime(e);
    x.mtime_nsec = archive_entry_mtime_nsec(e);
    if (const char* h = archive_entry_hardlink(e)) {
      x.type = '1';
      x.link = h;
    } else {
      switch (archive_entry_filetype(e)) {
        case AE_IFREG:
          x.type = '0';
          break;
        case AE_IFLNK:
          x.type = '2';
          x.link = archive_entry_symlink(e);
          break;
        case AE_IFCHR:
          x.type = '3';
          break;
        case AE_IFBLK:
          x.type = '4';
          break;
        case AE_IFDIR:
          x.type = '5';
          break;
        case AE_IFIFO:
          x.type = '6';
          break;
        default:
          x.type = '?';
      }
    }
    archive_entry_xattr_reset(e);
    const char* xn;
    const void* xv;
    size_t xs;
    while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK) {
      x.xattrs[xn] = std::string(static_cast<const char*>(xv), xs);
    }
    out.push_back(std::move(x));
  }
  archive_read_free(a);
  return out;
}

std::vector<std::string> Names(const std::vector<Entry>& es) {
  std::vector<std::string> out;
  for (const Entry& e : es) out.push_back(e.name);
  return out;
}

class DiffCompareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown, mknod, security.capability)";
    char tmpl[] = "/tmp/berth-diffcmp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    for (const char* d : {"lower", "upper", "target"}) fs::create_directory(tmp_ + "/" + d);
    lower_ = Tree{tmp_ + "/lower"};
    upper_ = Tree{tmp_ + "/upper"};
    target_ = Tree{tmp_ + "/target"};
  }
  void TearDown() override {
    if (tmp_.empty()) return;
    ::umount2((tmp_ + "/merged").c_str(), MNT_DETACH);  // left mounted by a failed assertion
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

  Result<std::string> Diff(Compression c = Compression::kNone, DiffResult* res = nullptr) {
    std::string out;
    DiffOptions opts{.compression = c, .whiteout_time = kWhiteoutTime};
    ASSIGN_OR_RETURN(DiffResult r, WriteDiff(
                                       lower_.root, upper_.root,
                                       [&](std::string_view b) {
                                         out.append(b);
                                         return Status::Ok();
                                       },
                                       opts));
    EXPECT_EQ(r.size, static_cast<int64_t>(out.size()));
    if (res) *res = r;
    return out;
  }

  // Applies `blob` onto target (a copy of lower) and expects target == upper.
  void ExpectAppliesToUpper(const std::string& blob, const char* media_type = kTar,
                            const std::string& diff_id = "") {
    StringReader r(blob);
    auto applied = ApplyLayer(r, media_type, target_.root);
    ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
    if (!diff_id.empty()) {
      EXPECT_EQ(applied->digest, diff_id);
    }
    auto got = Describe(target_.root);
    auto want = Describe(upper_.root);
    EXPECT_EQ(got, want) << DescribeDiff(got, want);
  }

  std::vector<std::pair<std::string, std::string>> ChangeList() {
    std::vector<std::pair<std::string, std::string>> out;
    Status s = Changes(lower_.root, upper_.root, [&](const Change& c) {
      out.emplace_back(std::string(ChangeKindName(c.kind)), std::string(c.path));
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  std::string tmp_;
  Tree lower_, upper_, target_;
};

// The base tree, built identically into lower, upper and target.
void BuildBase(const Tree& t) {
  t.Dir("etc");
  t.File("etc/keep", "unchanged\n");
  t.File("etc/same-size", "aaaa");
  t.File("etc/gone", "bye\n");
  t.File("etc/perm", "p", 0644);
  t.File("etc/own", "o");
  t.Dir("tree");
  t.Dir("tree/sub");
  t.File("tree/sub/x", "x");
  t.File("tree/y", "y");
  t.File("file2dir", "f");
  t.Dir("dir2file");
  t.File("dir2file/child", "c");
  t.Symlink("link", "old-target");
  t.File("h1", "linked\n");
  t.Link("h2", "h1");
  t.File("k1", "soon linked\n");
  t.Dir("u");
  t.File("u/old", "old");
  t.Dir("u/deep");
  t.Dir("u/deep/er");
  t.File("u/deep/er/f", "1");
  t.File("setuid", "s", 04755);
  t.Times("etc", kT);
}

TEST_F(DiffCompareTest, RoundTripReproducesUpper) {
  for (const Tree* t : {&lower_, &upper_, &target_}) BuildBase(*t);
  const Tree& u = upper_;
  // Modifications in upper.
  u.File("etc/same-size", "bbbb");  // same size, same whole-second mtime
  ASSERT_EQ(::unlink(u.P("etc/gone").c_str()), 0);
  ASSERT_EQ(::chmod(u.P("etc/perm").c_str(), 0600), 0);
  u.Own("etc/own", 1000, 1001);
  u.File("etc/new", "new file\n", 0640, kT + 5, 123);
  fs::remove_all(u.P("tree"));  // a whole directory
  fs::remove(u.P("file2dir"));
  u.Dir("file2dir", 0700);
  u.File("file2dir/inside", "i");
  fs::remove_all(u.P("dir2file"));
  u.File("dir2file", "now a file");
  fs::remove(u.P("link"));
  u.Symlink("link", "new-target");
  u.Symlink("escape", "/etc");  // stored as a link, never followed
  u.File("n1", "new pair\n");
  u.Link("n2", "n1");
  u.Link("k2", "k1");                        // a new name for an unchanged file
  u.File("u/deep/er/f", "2", 0644, kT + 1);  // only a deep file changes
  u.Cap("setuid");
  u.Node("chr", S_IFCHR | 0620, makedev(1, 3));
  u.Node("fifo", S_IFIFO | 0600);
  u.Socket("sock");
  std::string long_name(150, 'l');
  u.File(long_name, "long\n");
  std::string long_dir(110, 'q');  // "<110 q>/gone": a whiteout name over 100 bytes
  for (const Tree* t : {&lower_, &target_}) {
    t->Dir(long_dir);
    t->File(long_dir + "/gone", "g");
  }
  u.Dir(long_dir);
  u.File("caf\xc3\xa9", "utf8\n");
  u.Dir("new");
  u.Dir("new/a", 0750);
  u.File("new/a/f", "nested\n");
  u.Times("etc", kT);  // etc's own metadata unchanged: written only as a parent

  DiffResult res;
  auto tar = Diff(Compression::kNone, &res);
  ASSERT_TRUE(tar.has_value()) << tar.error().ToString();
  EXPECT_EQ(res.uncompressed_digest, content::DigestOf(*tar));
  EXPECT_EQ(res.uncompressed_size, static_cast<int64_t>(tar->size()));
  ExpectAppliesToUpper(*tar, kTar, res.uncompressed_digest);

  std::vector<Entry> es = ListTar(*tar);
  std::map<std::string, Entry> by_name;
  for (const Entry& e : es) EXPECT_TRUE(by_name.emplace(e.name, e).second) << "twice: " << e.name;
  // Deleted things are one whiteout each, children of deleted directories implied.
  EXPECT_TRUE(by_name.contains("etc/.wh.gone"));
  EXPECT_TRUE(by_name.contains(long_dir + "/.wh.gone"));
  EXPECT_TRUE(by_name.contains(".wh.tree"));
  for (const Entry& e : es) EXPECT_FALSE(e.name.starts_with("tree/")) << e.name;
  EXPECT_FALSE(by_name.contains("dir2file/.wh.child")) << "implied by dir2file becoming a file";
  // Unchanged files are not in the layer; hardlinks that were untouched neither.
  for (const char* n : {"etc/keep", "h1", "h2", "u/old", "sock"}) {
    EXPECT_FALSE(by_name.contains(n)) << n;
  }
  // The unchanged directories above a change are, as their own entries, before it.
  ASSERT_TRUE(by_name.contains("u/") && by_name.contains("u/deep/") &&
              by_name.contains("u/deep/er/"));
  std::vector<std::string> names = Names(es);
  auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n); };
  EXPECT_LT(at("u/"), at("u/deep/"));
  EXPECT_LT(at("u/deep/"), at("u/deep/er/"));
  EXPECT_LT(at("u/deep/er/"), at("u/deep/er/f"));
  EXPECT_LT(at("etc/"), at("etc/.wh.gone"));
  // The new name of an unchanged file carries the data, the old name links to it.
  ASSERT_TRUE(by_name.contains("k1") && by_name.contains("k2"));
  EXPECT_EQ(by_name["k2"].type, '0');
  EXPECT_EQ(by_name["k1"].type, '1');
  EXPECT_EQ(by_name["k1"].link, "k2");
  EXPECT_EQ(by_name["n1"].type, '0');
  EXPECT_EQ(by_name["n2"].type, '1');
  EXPECT_EQ(by_name["n2"].link, "n1");
  EXPECT_EQ(by_name["escape"].type, '2');
  EXPECT_EQ(by_name["escape"].link, "/etc");
  EXPECT_EQ(by_name["chr"].type, '3');
  EXPECT_EQ(by_name["fifo"].type, '6');
  EXPECT_EQ(by_name["setuid"].mode, 04755u);
  EXPECT_EQ(by_name["setuid"].xattrs["security.capability"], CapValue());
  EXPECT_EQ(by_name["etc/own"].uid, 1000);
  EXPECT_EQ(by_name["etc/own"].gid, 1001);
  EXPECT_EQ(by_name["etc/new"].mtime, kT + 5);
  EXPECT_EQ(by_name["etc/new"].mtime_nsec, 0) << "mtime truncated to seconds";
  EXPECT_TRUE(by_name.contains(long_name));
  EXPECT_TRUE(by_name.contains("caf\xc3\xa9"));
  EXPECT_TRUE(by_name.contains("file2dir/"));
  EXPECT_EQ(by_name["file2dir/"].type, '5');
  EXPECT_EQ(by_name["file2dir/"].mode, 0700u);
}

TEST_F(DiffCompareTest, WhiteoutAndParentEntriesLookLikeContainerds) {
  for (const Tree* t : {&lower_, &upper_, &target_}) {
    t->Dir("u", 0711);
    t->File("u/old", "old");
    t->Dir("gone");
    t->File("gone/x", "x");
  }
  upper_.Own("u", 7, 8);
  lower_.Own("u", 7, 8);
  target_.Own("u", 7, 8);
  fs::remove(upper_.P("u/old"));
  upper_.File("u/new", "n");
  fs::remove_all(upper_.P("gone"));
  upper_.File("top", "t");

  auto tar = Diff();
  ASSERT_TRUE(tar.has_value()) << tar.error().ToString();
  std::vector<Entry> es = ListTar(*tar);
  EXPECT_EQ(Names(es), (std::vector<std::string>{".wh.gone", "top", "u/", "u/new", "u/.wh.old"}));
  const Entry& wh = es[0];
  EXPECT_EQ(wh.type, '0');
  EXPECT_EQ(wh.mode, 0u);
  EXPECT_EQ(wh.uid, 0);
  EXPECT_EQ(wh.size, 0);
  EXPECT_EQ(wh.mtime, kWhiteoutTime / 1000000000) << "rounded to the second";
  EXPECT_EQ(wh.mtime_nsec, 0);
  EXPECT_TRUE(tar->starts_with(".wh.gone")) << "plain ustar header, no PAX header in front";
  const Entry& parent = es[2];
  EXPECT_EQ(parent.type, '5');
  EXPECT_EQ(parent.mode, 0711u);
  EXPECT_EQ(parent.uid, 7);
  EXPECT_EQ(parent.gid, 8);
  // Exactly two zero blocks after the last entry, nothing more.
  ASSERT_GE(tar->size(), 1024u);
  EXPECT_EQ(tar->size() % 512, 0u);
  EXPECT_EQ(tar->substr(tar->size() - 1024), std::string(1024, '\0'));
  EXPECT_NE(tar->substr(tar->size() - 1536, 512), std::string(512, '\0'));
  ExpectAppliesToUpper(*tar);
}

TEST_F(DiffCompareTest, ChangesFollowContainerdsSameFileRules) {
  for (const Tree* t : {&lower_, &upper_}) {
    t->Dir("a");
    t->File("a/b", "1111");
    t->File("a/c", "c");
    t->File("d", "d");
    t->Dir("e");
    t->File("e/f", "f");
    t->File("g", "same", 0644, kT, 0);
    t->File("h", "same", 0644, kT, 5);
    t->File("l1", "l");
    t->Link("l2", "l1");
    t->Dir("z");
    t->Dir("z/y");
    t->File("z/y/x", "x");
    t->File("m", "m");
  }
  upper_.File("a/b", "2222");   // same size and second: bytes compared
  upper_.Times("a", kT + 100);  // directory mtime alone is no change
  fs::remove(upper_.P("d"));
  upper_.Dir("d");
  upper_.File("d/x", "x");
  fs::remove_all(upper_.P("e"));
  upper_.File("e", "e");
  upper_.File("h", "same", 0644, kT, 6);  // nanoseconds differ: modified without reading
  fs::remove_all(upper_.P("z"));
  upper_.File("m", "m", 0644, kT + 1);
  EXPECT_EQ(ChangeList(), (std::vector<std::pair<std::string, std::string>>{
                              {"modify", "/a/b"},
                              {"modify", "/d"},
                              {"add", "/d/x"},
                              {"modify", "/e"},
                              {"modify", "/h"},
                              {"unmodified", "/l1"},
                              {"unmodified", "/l2"},
                              {"modify", "/m"},
                              {"delete", "/z"},
                          }));
}

TEST_F(DiffCompareTest, SameInodeOnBothSidesIsUnchanged) {
  upper_.File("f", "shared");
  ASSERT_EQ(::link(upper_.P("f").c_str(), lower_.P("f").c_str()), 0);
  // Both names are the same inode (nlink 2), so the file is "unmodified", never "modify".
  EXPECT_EQ(ChangeList(), (std::vector<std::pair<std::string, std::string>>{{"unmodified", "/f"}}));
  auto tar = Diff();
  ASSERT_TRUE(tar.has_value());
  EXPECT_TRUE(ListTar(*tar).empty());
}

TEST_F(DiffCompareTest, GzipAndZstdLayersApplyWithTheSameDiffId) {
  for (const Tree* t : {&lower_, &upper_}) t->File("a", "a");
  upper_.File("b", std::string(300000, 'b'));
  fs::remove(upper_.P("a"));
  struct Case {
    Compression c;
    const char* media_type;
    std::string magic;
  };
  std::string plain_digest;
  for (const Case& k :
       {Case{Compression::kNone, kTar, ".wh.a"},
        Case{Compression::kGzip, "application/vnd.oci.image.layer.v1.tar+gzip", "\x1f\x8b"},
        Case{Compression::kZstd, "application/vnd.oci.image.layer.v1.tar+zstd",
             "\x28\xb5\x2f\xfd"}}) {
    fs::remove_all(target_.root);
    fs::create_directory(target_.root);
    target_.File("a", "a");
    DiffResult res;
    auto blob = Diff(k.c, &res);
    ASSERT_TRUE(blob.has_value()) << blob.error().ToString();
    EXPECT_TRUE(blob->starts_with(k.magic)) << k.media_type;
    if (plain_digest.empty()) plain_digest = res.uncompressed_digest;
    EXPECT_EQ(res.uncompressed_digest, plain_digest) << k.media_type;
    if (k.c != Compression::kNone) {
      EXPECT_LT(blob->size(), 10000u) << "compressed";
    }
    ExpectAppliesToUpper(*blob, k.media_type, plain_digest);
  }
}

TEST_F(DiffCompareTest, EmptyDiffIsAnEmptyTar) {
  for (const Tree* t : {&lower_, &upper_}) t->File("same", "same");
  auto tar = Diff();
  ASSERT_TRUE(tar.has_value());
  EXPECT_EQ(*tar, std::string(1024, '\0'));
}

TEST_F(DiffCompareTest, CancelStopsTheWalk) {
  upper_.File("a", "a");
  std::string out;
  auto r = WriteDiff(
      lower_.root, upper_.root,
      [&](std::string_view b) {
        out.append(b);
        return Status::Ok();
      },
      DiffOptions{.cancelled = [] { return true; }});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kCanceled);
}

TEST_F(DiffCompareTest, SinkErrorsStopTheDiff) {
  upper_.File("a", std::string(3 << 20, 'a'));
  auto r = WriteDiff(lower_.root, upper_.root,
                     [](std::string_view) { return Status(Code::kResourceExhausted, "full"); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kResourceExhausted);
}

TEST(DiffCompression, MediaTypes) {
  EXPECT_EQ(DiffCompression("application/vnd.oci.image.layer.v1.tar"), Compression::kNone);
  EXPECT_EQ(DiffCompression("application/vnd.oci.image.layer.v1.tar+gzip"), Compression::kGzip);
  EXPECT_EQ(DiffCompression("application/vnd.oci.image.layer.v1.tar+zstd"), Compression::kZstd);
  auto bad = DiffCompression("application/vnd.docker.image.rootfs.diff.tar.gzip");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kUnimplemented);
  EXPECT_EQ(bad.error().message(),
            "unsupported diff media type: application/vnd.docker.image.rootfs.diff.tar.gzip");
}

TEST(TarWriter, LongNamesBigIdsAndOldTimesGoToPaxRecords) {
  std::string out;
  TarWriter tw([&](std::string_view b) {
    out.append(b);
    return Status::Ok();
  });
  std::string long_name = std::string(120, 'n') + "/file";
  TarHeader h{.name = long_name,
              .mode = 0640,
              .uid = 3000000,
              .gid = 5,
              .size = 3,
              .mtime = -86400,
              .pax = {{"SCHILY.xattr.user.k", std::string("v\0w", 3)}}};
  ASSERT_TRUE(tw.WriteHeader(h).ok());
  ASSERT_TRUE(tw.WriteData("abc").ok());
  TarHeader l{.name = "link", .type = '2', .linkname = std::string(200, 't'), .mtime = kT};
  ASSERT_TRUE(tw.WriteHeader(l).ok());
  ASSERT_TRUE(tw.Close().ok());
  std::vector<Entry> es = ListTar(out);
  ASSERT_GE(es.size(), 2u);
  EXPECT_EQ(es[0].name, long_name);
  EXPECT_EQ(es[0].uid, 3000000);
  EXPECT_EQ(es[0].mtime, -86400);
  EXPECT_EQ(es[0].size, 3);
  EXPECT_EQ(es[0].xattrs["user.k"], std::string("v\0w", 3));
  EXPECT_EQ(es[1].link, std::string(200, 't'));

  // An entry must get exactly the data its header announced.
  TarWriter bad([](std::string_view) { return Status::Ok(); });
  ASSERT_TRUE(bad.WriteHeader(TarHeader{.name = "x", .size = 2}).ok());
  EXPECT_EQ(bad.WriteData("abc").code(), Code::kInternal);
  EXPECT_EQ(bad.WriteHeader(TarHeader{.name = "y"}).code(), Code::kInternal);
  EXPECT_EQ(bad.Close().code(), Code::kInternal);
}

// Go's tar writer with no format asked (containerd's whiteouts): a long name is split into
// the ustar prefix and name fields instead of a PAX record, when it can be.
TEST(TarWriter, UstarIfPossibleSplitsLongNames) {
  std::string out;
  TarWriter tw([&](std::string_view b) {
    out.append(b);
    return Status::Ok();
  });
  std::string dir(120, 'd'), long_base(120, 'b');
  ASSERT_TRUE(tw.WriteHeader({.name = dir + "/.wh.x", .ustar_if_possible = true}).ok());
  ASSERT_EQ(out.size(), 512u) << "no PAX header";
  EXPECT_EQ(out.substr(0, 6), ".wh.x" + std::string(1, '\0'));
  EXPECT_EQ(out.substr(345, 120), dir);
  // The base name alone is over 100 bytes: cannot be split, so PAX after all.
  ASSERT_TRUE(tw.WriteHeader({.name = "d/" + long_base, .ustar_if_possible = true}).ok());
  EXPECT_GT(out.size(), 1024u);
  ASSERT_TRUE(tw.Close().ok());
  std::vector<Entry> es = ListTar(out);
  ASSERT_EQ(es.size(), 2u);
  EXPECT_EQ(es[0].name, dir + "/.wh.x");
  EXPECT_EQ(es[1].name, "d/" + long_base);
}

// The upper side as containerd gets it for an active overlay snapshot: upperdir + lowerdir,
// mounted read-only (upperdir folded into the lowerdirs), whiteouts as 0:0 char devices.
TEST_F(DiffCompareTest, OverlayUpperMountedReadOnly) {
  for (const Tree* t : {&lower_, &target_}) {
    t->Dir("d");
    t->File("d/del", "x");
    t->File("d/mod", "1");
    t->Dir("gone");
    t->File("gone/f", "f");
    t->File("keep", "k");
  }
  for (const char* d : {"ovl-upper", "ovl-work", "merged", "mnts"}) {
    fs::create_directory(tmp_ + "/" + d);
  }
  std::string opts =
      "lowerdir=" + lower_.root + ",upperdir=" + tmp_ + "/ovl-upper,workdir=" + tmp_ + "/ovl-work";
  if (::mount("overlay", (tmp_ + "/merged").c_str(), "overlay", 0, opts.c_str()) != 0) {
    GTEST_SKIP() << "overlay mount: " << std::strerror(errno);
  }
  {
    Tree m{tmp_ + "/merged"};
    fs::remove(m.P("d/del"));
    m.File("d/mod", "2", 0644, kT + 1);
    fs::remove_all(m.P("gone"));
    m.Dir("gone");  // recreated: opaque in the upperdir
    m.File("gone/new", "n");
    m.File("added", "a");
  }
  ASSERT_EQ(::umount2((tmp_ + "/merged").c_str(), 0), 0);

  std::vector<Mount> right =
      ReadonlyMounts({{"overlay",
                       "overlay",
                       {"workdir=" + tmp_ + "/ovl-work", "upperdir=" + tmp_ + "/ovl-upper",
                        "lowerdir=" + lower_.root}}});
  ASSERT_EQ(right[0].options,
            (std::vector<std::string>{"lowerdir=" + tmp_ + "/ovl-upper:" + lower_.root}));
  std::string out;
  Status applied;
  std::map<std::string, std::string> want;
  {
    auto left =
        TempMount::Make(tmp_ + "/mnts", ReadonlyMounts({{"bind", lower_.root, {"rbind", "rw"}}}));
    ASSERT_TRUE(left.has_value()) << left.error().ToString();
    auto up = TempMount::Make(tmp_ + "/mnts", right);
    ASSERT_TRUE(up.has_value()) << up.error().ToString();
    EXPECT_NE(::access(((*left)->dir() + "/keep").c_str(), W_OK), 0) << "left is read-only";
    EXPECT_EQ(errno, EROFS);
    auto r = WriteDiff((*left)->dir(), (*up)->dir(), [&](std::string_view b) {
      out.append(b);
      return Status::Ok();
    });
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    want = Describe((*up)->dir());
  }
  EXPECT_TRUE(fs::is_empty(tmp_ + "/mnts")) << "temp mount points removed";
  std::vector<std::string> names = Names(ListTar(out));
  EXPECT_EQ(names, (std::vector<std::string>{"added", "d/", "d/.wh.del", "d/mod", "gone/",
                                             "gone/.wh.f", "gone/new"}));
  StringReader rd(out);
  ASSERT_TRUE(ApplyLayer(rd, kTar, target_.root).has_value());
  auto got = Describe(target_.root);
  EXPECT_EQ(got, want) << DescribeDiff(got, want);
}

}  // namespace
}  // namespace berth::diff

namespace berth::diff {
namespace {

// Issue 12 item 2: trees a container builds as deep as it likes. The walk is iterative and
// fd-bounded; a path past PATH_MAX is an error (containerd: "file name too long"), not a crash.
class DeepDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    tmp_ = berth::testing::DeepTreeTempDir("berth-deep-diff");
    ASSERT_FALSE(tmp_.empty());
    for (const char* d : {"lower", "upper", "target"}) {
      ASSERT_EQ(::mkdir((tmp_ + "/" + d).c_str(), 0755), 0);
    }
  }
  void TearDown() override {
    if (tmp_.empty()) return;
    EXPECT_TRUE(RemoveAll(tmp_).ok());
  }
  Result<DiffResult> DiffOnSmallStack(std::string* out) {
    Result<DiffResult> r = std::unexpected(Internal("not run"));
    berth::testing::RunOnSmallStack(256 << 10, [&] {
      r = WriteDiff(tmp_ + "/lower", tmp_ + "/upper", [&](std::string_view b) {
        out->append(b);
        return Status::Ok();
      }, DiffOptions{.compression = Compression::kNone, .whiteout_time = kWhiteoutTime});
    });
    return r;
  }
  std::string tmp_;
};

TEST_F(DeepDiffTest, TreeDeeperThanPathMaxIsAnErrorNotACrash) {
  ASSERT_NO_FATAL_FAILURE(berth::testing::MakeDeepTree(tmp_ + "/upper", 11000));
  std::string out;
  auto r = DiffOnSmallStack(&out);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find("file name too long"), std::string::npos)
      << r.error().ToString();
  // The same from the other side: a deep tree deleted.
  ASSERT_EQ(::rename((tmp_ + "/upper/d").c_str(), (tmp_ + "/lower/d").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(berth::testing::MakeDeepTree(tmp_ + "/upper", 11000, "d", false));
  Status s;
  berth::testing::RunOnSmallStack(256 << 10, [&] {
    s = Changes(tmp_ + "/lower", tmp_ + "/upper", [](const Change&) { return Status::Ok(); });
  });
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
}

// 1,800 levels (within PATH_MAX) on both sides, a file deleted at the bottom: the walk goes
// down with a few fds and a small stack, and the whiteout brings its 1,800 unchanged parents
// along (written in a loop, not by recursion). The layer then applies.
TEST_F(DeepDiffTest, DeepButNameableTreeDiffsWithFewFdsAndLittleStack) {
  constexpr int kDepth = 1800;
  for (const char* side : {"lower", "upper", "target"}) {
    ASSERT_NO_FATAL_FAILURE(
        berth::testing::MakeDeepTree(tmp_ + "/" + side, kDepth, "d", std::string(side) != "upper"));
  }
  std::string tar;
  Result<DiffResult> r = std::unexpected(Internal("not run"));
  {
    berth::testing::ScopedFdLimit limit(256);
    r = DiffOnSmallStack(&tar);
  }
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  std::vector<Entry> entries = ListTar(tar);
  ASSERT_EQ(entries.size(), size_t{kDepth + 1});
  std::string want;
  for (int i = 0; i < kDepth; ++i) want += "d/";
  EXPECT_EQ(entries.front().name, "d/");
  EXPECT_EQ(entries.back().name, want + ".wh.f");

  StringReader reader(tar);
  auto applied = ApplyLayer(reader, kTar, tmp_ + "/target");
  ASSERT_TRUE(applied.has_value()) << applied.error().ToString();
  struct stat st;
  EXPECT_NE(::lstat((tmp_ + "/target/" + want + "f").c_str(), &st), 0) << "whiteout applied";
  EXPECT_EQ(::lstat((tmp_ + "/target/" + want).c_str(), &st), 0);
}

}  // namespace
}  // namespace berth::diff
