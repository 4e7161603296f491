// Layer extraction under hostile input (reliability anchors T1–T8, compat §6). Every tar is
// built here from hand-made ustar/PAX headers so names are exactly what an attacker writes.
#include "diff/apply.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "../common/deep_tree.h"
#include "common/fs.h"
#include "content/digest.h"
#include "string_reader.h"

namespace berth::diff {
namespace {

namespace fs = std::filesystem;

constexpr char kTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kTarGz[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kTarZst[] = "application/vnd.oci.image.layer.v1.tar+zstd";

// A tar built header by header.
class Tar {
 public:
  struct E {
    std::string name;
    char type = '0';
    std::string data;
    std::string link;
    int mode = 0644;
    int uid = 0, gid = 0;
    int64_t mtime = 1700000000;
    int major = 0, minor = 0;
    std::map<std::string, std::string> pax;  // extra PAX records
  };
  Tar& File(const std::string& name, const std::string& data, int mode = 0644) {
    return Add({.name = name, .type = '0', .data = data, .mode = mode});
  }
  Tar& Dir(const std::string& name, int mode = 0755) {
    return Add({.name = name, .type = '5', .mode = mode});
  }
  Tar& Symlink(const std::string& name, const std::string& target) {
    return Add({.name = name, .type = '2', .link = target, .mode = 0777});
  }
  Tar& Hardlink(const std::string& name, const std::string& target) {
    return Add({.name = name, .type = '1', .link = target});
  }
  Tar& Add(const E& e) {
    std::map<std::string, std::string> pax = e.pax;
    if (e.name.size() > 99) pax["path"] = e.name;
    if (e.link.size() > 99) pax["linkpath"] = e.link;
    if (!pax.empty()) {
      std::string body;
      for (const auto& [k, v] : pax) body += Record(k, v);
      Header("PaxHeaders/x", 'x', body.size(), "", 0644, 0, 0, 0, 0, 0);
      Data(body);
    }
    size_t size = e.type == '0' ? e.data.size() : 0;
    if (pax.contains("size")) size = 0;  // the header lies; PAX carries the size
    Header(e.name.substr(0, 99), e.type, size, e.link.substr(0, 99), e.mode, e.uid, e.gid,
           e.mtime, e.major, e.minor);
    Data(e.data);
    return *this;
  }
  // End marker plus `trailing` extra bytes (the digest must cover them).
  std::string Finish(const std::string& trailing = "") const {
    return out_ + std::string(1024, '\0') + trailing;
  }
  std::string Raw() const { return out_; }

 private:
  static std::string Record(const std::string& k, const std::string& v) {
    std::string rest = " " + k + "=" + v + "\n";
    size_t len = rest.size() + 1;
    while (std::to_string(len).size() + rest.size() != len) ++len;
    return std::to_string(len) + rest;
  }
  static void Octal(char* f, size_t w, int64_t v) {
    std::snprintf(f, w, "%0*llo", static_cast<int>(w - 1), static_cast<unsigned long long>(v));
  }
  void Header(const std::string& name, char type, size_t size, const std::string& link, int mode,
              int uid, int gid, int64_t mtime, int major, int minor) {
    char h[512] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    Octal(h + 100, 8, mode);
    Octal(h + 108, 8, uid);
    Octal(h + 116, 8, gid);
    Octal(h + 124, 12, static_cast<int64_t>(size));
    Octal(h + 136, 12, mtime);
    h[156] = type;
    std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(h + 257, "ustar\0" "00", 8);
    Octal(h + 329, 8, major);
    Octal(h + 337, 8, minor);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    out_.append(h, 512);
  }
  void Data(const std::string& d) {
    out_ += d;
    if (d.size() % 512) out_.append(512 - d.size() % 512, '\0');
  }
  std::string out_;
};

std::string Gzip(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Zstd(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct HostState {
  std::string listing;
  bool operator==(const HostState&) const = default;
};

class DiffApplyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown, mknod, trusted xattrs)";
    char tmpl[] = "/tmp/berth-diff-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    root_ = tmp_ + "/a/b/root";  // ../../x from the root would land in tmp_/a
    outside_ = tmp_ + "/outside";
    fs::create_directories(root_);
    fs::create_directories(outside_ + "/etc");
    std::ofstream(outside_ + "/etc/passwd") << "host passwd\n";
    std::ofstream(outside_ + "/sentinel") << "do not touch\n";
    ::chmod((outside_ + "/sentinel").c_str(), 0400);
    before_ = Snapshot();
  }
  void TearDown() override {
    if (tmp_.empty()) return;
    EXPECT_EQ(Snapshot(), before_) << "something outside the root changed";
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

  // Everything under tmp_ except the root: paths, types, modes, owners, sizes, mtimes,
  // link counts, plus the sentinel's content. Catches writes, chmods, chowns and links.
  std::string Snapshot() {
    std::ostringstream o;
    auto add = [&](const fs::path& p) {
      struct stat st;
      if (::lstat(p.c_str(), &st) != 0) return;
      o << p.string() << " " << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":"
        << st.st_gid << " " << st.st_size << " " << st.st_nlink << " "
        << (S_ISDIR(st.st_mode) ? 0 : st.st_mtim.tv_sec) << "\n";
    };
    add(tmp_);
    for (auto it = fs::recursive_directory_iterator(tmp_); it != fs::recursive_directory_iterator();
         ++it) {
      std::string p = it->path().string();
      if (p.starts_with(root_)) {
        it.disable_recursion_pending();
        continue;
      }
      add(it->path());
    }
    o << ReadFile(outside_ + "/sentinel");
    return o.str();
  }

  Result<ApplyResult> Apply(const std::string& blob, const char* mt = kTar,
                            WhiteoutMode mode = WhiteoutMode::kNaive) {
    StringReader r(blob);
    return ApplyLayer(r, mt, root_, ApplyOptions{.mode = mode});
  }
  std::string In(const std::string& rel) { return root_ + "/" + rel; }
  bool Exists(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0;
  }

  std::string tmp_, root_, outside_, before_;
};

TEST_F(DiffApplyTest, PlainGzipZstdDigestCoversWholeStream) {
  Tar t;
  t.Dir("d").File("d/f", "hello\n", 0640).Symlink("d/l", "f");
  std::string tar = t.Finish(std::string(2048, '\0'));  // padding after the end marker
  for (auto [blob, mt] : {std::pair{tar, kTar}, {Gzip(tar), kTarGz}, {Zstd(tar), kTarZst},
                          {Gzip(tar), "application/vnd.docker.image.rootfs.diff.tar.gzip"}}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    auto r = Apply(blob, mt);
    ASSERT_TRUE(r.has_value()) << mt << ": " << r.error().ToString();
    EXPECT_EQ(r->digest, content::DigestOf(tar)) << mt;
    EXPECT_EQ(r->size, static_cast<int64_t>(tar.size()));
    EXPECT_EQ(ReadFile(In("d/f")), "hello\n");
    EXPECT_EQ(fs::read_symlink(In("d/l")), "f");
    struct stat st;
    ASSERT_EQ(::stat(In("d/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1700000000);
    ASSERT_EQ(::stat(In("d").c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, 1700000000) << "directory times re-applied at the end";
  }
  // And the same digest as sha256sum prints for the decompressed tar.
  std::string path = tmp_ + "/layer.tar";
  std::ofstream(path, std::ios::binary) << tar;
  FILE* p = ::popen(("sha256sum " + path).c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[65] = {};
  ASSERT_EQ(std::fread(buf, 1, 64, p), 64u);
  ::pclose(p);
  fs::remove(path);
  EXPECT_EQ(Apply(tar)->digest, "sha256:" + std::string(buf));
}

// Incompressible multi-megabyte files: many decompressor refills per entry.
TEST_F(DiffApplyTest, LargeIncompressibleFiles) {
  std::string big(3 << 20, '\0');
  uint32_t x = 12345;
  for (auto& c : big) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  Tar t;
  t.File("big1", big).File("small", "s").File("big2", big.substr(1000));
  std::string tar = t.Finish();
  for (auto [blob, mt] : {std::pair{tar, kTar}, {Gzip(tar), kTarGz}, {Zstd(tar), kTarZst}}) {
    auto r = Apply(blob, mt);
    ASSERT_TRUE(r.has_value()) << mt << ": " << r.error().ToString();
    EXPECT_EQ(r->digest, content::DigestOf(tar));
    EXPECT_TRUE(ReadFile(In("big1")) == big);
    EXPECT_TRUE(ReadFile(In("big2")) == big.substr(1000));
  }
}

// As Go's archive/tar: a stream ending right after an entry's data (no padding, no end
// marker; umoci writes these) is complete; one ending inside the data is truncated.
TEST_F(DiffApplyTest, MissingEndMarkerIsAcceptedTruncatedDataIsNot) {
  std::string data(700, 'q');
  std::string raw = Tar().Dir("d").File("d/f", data).Raw();
  std::string exact = raw.substr(0, 512 + 512 + 700);
  for (auto [blob, mt] : {std::pair{exact, kTar}, {Gzip(exact), kTarGz}, {Zstd(exact), kTarZst}}) {
    auto r = Apply(blob, mt);
    ASSERT_TRUE(r.has_value()) << mt << ": " << r.error().ToString();
    EXPECT_EQ(r->digest, content::DigestOf(exact));
    EXPECT_EQ(r->size, static_cast<int64_t>(exact.size()));
    EXPECT_EQ(ReadFile(In("d/f")), data);
  }
  for (size_t cut : {size_t{512 + 512 + 512}, size_t{512 + 512 + 699}, size_t{512 + 512 + 10}}) {
    auto r = Apply(Gzip(raw.substr(0, cut)), kTarGz);
    ASSERT_FALSE(r.has_value()) << cut;
    EXPECT_EQ(r.error().code(), Code::kDataLoss) << r.error().ToString();
  }
}

TEST_F(DiffApplyTest, UnknownMediaTypeIsUnimplemented) {
  auto r = Apply(Tar().Finish(), "application/vnd.oci.image.layer.v1.tar+encrypted");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnimplemented);
}

TEST_F(DiffApplyTest, ModesOwnersSetuidDevices) {
  Tar t;
  t.Add({.name = "suid", .type = '0', .data = "x", .mode = 04755, .uid = 1000, .gid = 1001});
  t.Add({.name = "null", .type = '3', .mode = 0666, .major = 1, .minor = 3});
  t.Add({.name = "fifo", .type = '6', .mode = 0600});
  t.Add({.name = "x", .type = '0', .data = "v",
         .pax = {{"SCHILY.xattr.trusted.berth", "yes"}}});
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  struct stat st;
  ASSERT_EQ(::lstat(In("suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  ASSERT_EQ(::lstat(In("null").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  ASSERT_EQ(::lstat(In("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  // As containerd: trusted.* (admin) xattrs are never taken from a layer.
  char v[8] = {};
  EXPECT_LT(::lgetxattr(In("x").c_str(), "trusted.berth", v, sizeof v), 0);
  EXPECT_EQ(ReadFile(In("x")), "v");
}

// As containerd: a hardlink entry's own owner, mode, times and xattrs land on the shared inode.
TEST_F(DiffApplyTest, HardlinkEntryMetadataAppliesToTheInode) {
  Tar t;
  t.Add({.name = "f", .type = '0', .data = "x", .mode = 0600, .uid = 1, .gid = 2});
  t.Add({.name = "hl", .type = '1', .link = "f", .mode = 0640, .uid = 7, .gid = 8,
         .mtime = 1700000500, .pax = {{"SCHILY.xattr.user.k", "v"}}});
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  struct stat a, b;
  ASSERT_EQ(::lstat(In("f").c_str(), &a), 0);
  ASSERT_EQ(::lstat(In("hl").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mode & 07777, 0640u);
  EXPECT_EQ(a.st_uid, 7u);
  EXPECT_EQ(a.st_gid, 8u);
  EXPECT_EQ(a.st_mtim.tv_sec, 1700000500);
  char v[4] = {};
  ASSERT_EQ(::lgetxattr(In("f").c_str(), "user.k", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'v');
}

// Times as containerd sets them: atime is the later of atime and mtime; a time before the
// epoch or past int64 nanoseconds becomes the epoch.
TEST_F(DiffApplyTest, TimesFollowContainerd) {
  Tar t;
  t.Add({.name = "old-atime", .pax = {{"atime", "1600000000.5"}}});
  t.Add({.name = "new-atime", .pax = {{"atime", "1800000000.25"}}});
  t.Add({.name = "nanos", .pax = {{"mtime", "1700000000.123456789"}}});
  t.Add({.name = "negative", .mtime = 0, .pax = {{"mtime", "-1.5"}}});
  t.Add({.name = "far", .mtime = 0, .pax = {{"mtime", "10000000000"}}});
  t.Add({.name = "dir", .type = '5', .mode = 0755, .pax = {{"atime", "1000"}}});
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  auto times = [&](const std::string& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(In(p).c_str(), &st), 0) << p;
    return std::pair{st.st_atim, st.st_mtim};
  };
  auto [a1, m1] = times("old-atime");
  EXPECT_EQ(a1.tv_sec, 1700000000);
  EXPECT_EQ(a1.tv_nsec, 0);
  EXPECT_EQ(m1.tv_sec, 1700000000);
  auto [a2, m2] = times("new-atime");
  EXPECT_EQ(a2.tv_sec, 1800000000);
  EXPECT_EQ(a2.tv_nsec, 250000000);
  auto [a3, m3] = times("nanos");
  EXPECT_EQ(m3.tv_sec, 1700000000);
  EXPECT_EQ(m3.tv_nsec, 123456789);
  for (const char* p : {"negative", "far"}) {
    auto [a, m] = times(p);
    EXPECT_EQ(m.tv_sec, 0) << p;
    EXPECT_EQ(m.tv_nsec, 0) << p;
    EXPECT_EQ(a.tv_sec, 0) << p;
  }
  auto [a4, m4] = times("dir");
  EXPECT_EQ(a4.tv_sec, 1700000000);
  EXPECT_EQ(m4.tv_sec, 1700000000);
}

// T1: names are cleaned and clamped to the root.
TEST_F(DiffApplyTest, T1_BreakoutNamesStayInRoot) {
  Tar t;
  t.File("../../x", "1").File("/etc/x", "2").File("a/../../y", "3").File("./../../../../z", "4");
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  EXPECT_EQ(ReadFile(In("x")), "1");
  EXPECT_EQ(ReadFile(In("etc/x")), "2");
  EXPECT_EQ(ReadFile(In("y")), "3");
  EXPECT_EQ(ReadFile(In("z")), "4");
  EXPECT_FALSE(Exists(tmp_ + "/a/x"));
  EXPECT_FALSE(Exists(tmp_ + "/x"));
}

// T2: writes through symlinks land inside the root, whatever the link says.
TEST_F(DiffApplyTest, T2_WritesThroughSymlinksAreRerooted) {
  struct Case {
    std::vector<std::pair<std::string, std::string>> links;
    std::string write;
    std::string lands;
  };
  std::vector<Case> cases = {
      {{{"localetc", "/etc"}}, "localetc/x", "etc/x"},
      {{{"localetc", "../../etc"}}, "localetc/x", "etc/x"},
      {{{"localetc", outside_ + "/etc"}}, "localetc/x", outside_.substr(1) + "/etc/x"},
      {{{"l1", "/etc"}, {"l2", "l1"}}, "l2/x", "etc/x"},
      {{{"dummy", "/"}, {"l", "dummy/../etc"}}, "l/x", "etc/x"},
      {{{"root", "/"}}, "root/../../x", "x"},
      {{{"up", ".."}}, "up/up/up/x", "x"},
  };
  for (const auto& c : cases) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    Tar t;
    for (const auto& [n, target] : c.links) t.Symlink(n, target);
    t.File(c.write, "payload");
    auto r = Apply(t.Finish());
    ASSERT_TRUE(r.has_value()) << c.write << ": " << r.error().ToString();
    EXPECT_EQ(ReadFile(In(c.lands)), "payload") << c.write;
  }
}

// T3: hardlinks resolve inside the root; never a host inode.
TEST_F(DiffApplyTest, T3_HardlinksNeverReachTheHost) {
  struct stat host;
  ASSERT_EQ(::stat((outside_ + "/etc/passwd").c_str(), &host), 0);
  for (const std::string& target : std::vector<std::string>{
           "/etc/passwd", "../../../etc/passwd", outside_ + "/etc/passwd", "ldir/passwd"}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    Tar t;
    t.Symlink("ldir", outside_ + "/etc").Hardlink("h", target);
    auto r = Apply(t.Finish());
    EXPECT_FALSE(r.has_value()) << target << ": a target missing in the root must fail";
    struct stat st;
    if (::lstat(In("h").c_str(), &st) == 0) {
      EXPECT_NE(st.st_ino, host.st_ino);
    }
  }
  // A target present in the root, reached through a symlinked dir: linked inside.
  fs::remove_all(root_);
  fs::create_directories(root_);
  Tar t;
  t.Dir("etc").File("etc/passwd", "layer passwd").Symlink("ldir", "/etc").Hardlink("h", "ldir/passwd");
  auto r = Apply(t.Finish());
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  struct stat a, b;
  ASSERT_EQ(::stat(In("etc/passwd").c_str(), &a), 0);
  ASSERT_EQ(::lstat(In("h").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_NE(b.st_ino, host.st_ino);
}

// T4 (CVE-2021-32760): metadata of an entry named like a symlink never reaches the target.
TEST_F(DiffApplyTest, T4_ChmodChownThroughSymlinkLeavesHostAlone) {
  std::string host = outside_ + "/sentinel";
  Tar t;
  // A symlink carrying mode/owner/xattrs/times of its own.
  t.Add({.name = "link", .type = '2', .link = host, .mode = 07777, .uid = 123, .gid = 456,
         .mtime = 1, .pax = {{"SCHILY.xattr.user.evil", "1"}}});
  // A hardlink to the symlink itself (its header's owner lands on that same inode).
  t.Add({.name = "hl", .type = '1', .link = "link", .uid = 123, .gid = 456, .mtime = 1});
  t.Add({.name = "dirlink", .type = '2', .link = outside_, .mode = 0777});
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  struct stat st;
  ASSERT_EQ(::lstat(In("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_uid, 123u) << "lchown applies to the link itself";
  // A later layer entry at the link's name replaces the link, not its target.
  Tar t2;
  t2.File("link", "replaced", 0777).Dir("dirlink", 0777);
  ASSERT_TRUE(Apply(t2.Finish()).has_value());
  EXPECT_EQ(ReadFile(In("link")), "replaced");
  ASSERT_EQ(::lstat(In("dirlink").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // TearDown compares the host tree (mode 0400, owner, times, content) with SetUp's.
}

// T5 (CVE-2025-47290): a directory swapped for a symlink mid-layer is resolved afresh.
TEST_F(DiffApplyTest, T5_DirReplacedBySymlinkMidLayer) {
  Tar t;
  t.Dir("foo").Dir("foo/tmp").File("foo/tmp/a", "first").Symlink("foo", "/")
      .File("foo/tmp/x", "second");
  for (int i = 0; i < 2000; ++i) t.File("many/f" + std::to_string(i), "");
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  EXPECT_EQ(ReadFile(In("tmp/x")), "second");
  EXPECT_EQ(fs::read_symlink(In("foo")), "/");
  EXPECT_FALSE(Exists("/tmp/x") && ReadFile("/tmp/x") == "second");
  EXPECT_EQ(std::distance(fs::directory_iterator(In("many")), fs::directory_iterator()), 2000);
}

// T6: whiteouts that leave their directory are invalid; a whiteout removes the link only.
TEST_F(DiffApplyTest, T6_EscapingWhiteoutsAreInvalid) {
  fs::create_directories(In("etc"));
  std::ofstream(In("etc/keep")) << "k";
  for (const std::string name : {".wh..", ".wh...", "etc/.wh..", "etc/.wh...", ".wh."}) {
    auto r = Apply(Tar().File(name, "").Finish());
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << name;
    EXPECT_TRUE(Exists(In("etc/keep")));
  }
  Tar t;
  t.Symlink("link", outside_ + "/sentinel").File(".wh.link", "");
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  EXPECT_FALSE(Exists(In("link")));
  EXPECT_TRUE(Exists(outside_ + "/sentinel"));
  // AUFS bookkeeping is skipped, never materialised.
  ASSERT_TRUE(Apply(Tar().Dir(".wh..wh.plnk").File(".wh..wh.aufs", "").Finish()).has_value());
  EXPECT_FALSE(Exists(In(".wh..wh.plnk")));
  EXPECT_FALSE(Exists(In(".wh..wh.aufs")));
}

TEST_F(DiffApplyTest, NaiveWhiteoutsDeleteAndOpaqueClears) {
  fs::create_directories(In("d/sub"));
  std::ofstream(In("d/old")) << "o";
  std::ofstream(In("d/sub/old")) << "o";
  std::ofstream(In("gone")) << "g";
  fs::create_directories(In("gonedir/x"));
  Tar t;
  t.Dir("d").File("d/new", "n").File("d/.wh..wh..opq", "").File(".wh.gone", "")
      .File(".wh.gonedir", "").File(".wh.never-existed", "");
  auto r = Apply(t.Finish());
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_TRUE(Exists(In("d/new")));
  EXPECT_FALSE(Exists(In("d/old")));
  EXPECT_FALSE(Exists(In("d/sub")));
  EXPECT_FALSE(Exists(In("gone")));
  EXPECT_FALSE(Exists(In("gonedir")));
  EXPECT_FALSE(Exists(In(".wh.gone")));
  EXPECT_FALSE(Exists(In("d/.wh..wh..opq")));
}

TEST_F(DiffApplyTest, OverlayWhiteoutsBecomeDevicesAndXattrs) {
  std::string lower = tmp_ + "/lower";
  fs::create_directories(lower + "/implicit");
  ::chmod((lower + "/implicit").c_str(), 0711);
  ::chown((lower + "/implicit").c_str(), 7, 8);
  before_ = Snapshot();
  Tar t;
  t.Dir("d").File("d/.wh..wh..opq", "")
      .Add({.name = ".wh.gone", .type = '0', .uid = 5, .gid = 6})
      .File("implicit/f", "x");
  StringReader r(t.Finish());
  auto res = ApplyLayer(r, kTar, root_, {.mode = WhiteoutMode::kOverlay, .lowerdirs = {lower}});
  ASSERT_TRUE(res.has_value()) << res.error().ToString();
  struct stat st;
  ASSERT_EQ(::lstat(In("gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_EQ(st.st_uid, 5u);
  EXPECT_EQ(st.st_gid, 6u);
  char v[4] = {};
  ASSERT_EQ(::lgetxattr(In("d").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'y');
  EXPECT_FALSE(Exists(In("d/.wh..wh..opq")));
  ASSERT_EQ(::lstat(In("implicit").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u) << "implicit parent copied from the lowerdir";
  EXPECT_EQ(st.st_uid, 7u);
}

// As containerd's mkparent: an implicitly created parent takes owner, mode, times and
// non-trusted xattrs from the topmost lower that has the path, and only if it is a directory
// there (a whiteout means the directory is new: defaults).
TEST_F(DiffApplyTest, OverlayImplicitParentsFollowTheTopmostLower) {
  std::string l1 = tmp_ + "/l1", l2 = tmp_ + "/l2";
  fs::create_directories(l1 + "/kept");
  fs::create_directories(l2 + "/gone");
  ASSERT_EQ(::chmod((l1 + "/kept").c_str(), 0750), 0);
  ASSERT_EQ(::chown((l1 + "/kept").c_str(), 3, 4), 0);
  ASSERT_EQ(::setxattr((l1 + "/kept").c_str(), "user.k", "v", 1, 0), 0);
  ASSERT_EQ(::setxattr((l1 + "/kept").c_str(), "trusted.berth", "1", 1, 0), 0);
  ASSERT_EQ(::mknod((l1 + "/gone").c_str(), S_IFCHR, makedev(0, 0)), 0);  // a whiteout
  ASSERT_EQ(::chmod((l2 + "/gone").c_str(), 0700), 0);
  ASSERT_EQ(::chown((l2 + "/gone").c_str(), 5, 5), 0);
  before_ = Snapshot();
  // After Snapshot(), whose listing of kept/ would update its atime.
  timespec ts[2] = {{1600000000, 0}, {1600000001, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (l1 + "/kept").c_str(), ts, 0), 0);
  Tar t;
  t.File("kept/f", "x").File("gone/f", "y");
  StringReader r(t.Finish());
  auto res = ApplyLayer(r, kTar, root_, {.mode = WhiteoutMode::kOverlay, .lowerdirs = {l1, l2}});
  ASSERT_TRUE(res.has_value()) << res.error().ToString();
  struct stat st;
  ASSERT_EQ(::lstat(In("kept").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_uid, 3u);
  EXPECT_EQ(st.st_gid, 4u);
  EXPECT_EQ(st.st_atim.tv_sec, 1600000000);
  char v[4] = {};
  ASSERT_EQ(::lgetxattr(In("kept").c_str(), "user.k", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'v');
  EXPECT_LT(::lgetxattr(In("kept").c_str(), "trusted.berth", v, sizeof v), 0);
  ASSERT_EQ(::lstat(In("gone").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "the whiteout in the topmost lower ends the search";
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(DiffApplyTest, EntryReplacesWhatIsInTheWay) {
  fs::create_directories(In("dir/child"));
  std::ofstream(In("file")) << "f";
  fs::create_directories(In("keepdir"));
  std::ofstream(In("keepdir/inner")) << "i";
  Tar t;
  t.File("dir", "now a file").Dir("file").Dir("keepdir", 0700);
  ASSERT_TRUE(Apply(t.Finish()).has_value());
  EXPECT_EQ(ReadFile(In("dir")), "now a file");
  EXPECT_TRUE(fs::is_directory(In("file")));
  EXPECT_TRUE(Exists(In("keepdir/inner"))) << "dir over dir keeps contents";
}

// T8: truncated or corrupt streams fail and leave nothing outside the root.
TEST_F(DiffApplyTest, T8_TruncatedAndCorruptStreamsFail) {
  Tar t;
  t.File("../../escape-attempt", std::string(100000, 'a')).File("b", std::string(100000, 'b'));
  std::string tar = t.Finish();
  std::string gz = Gzip(tar), zs = Zstd(tar);
  for (size_t cut : {size_t{10}, gz.size() / 2, gz.size() - 4}) {
    auto r = Apply(gz.substr(0, cut), kTarGz);
    EXPECT_FALSE(r.has_value()) << "gzip cut at " << cut;
  }
  for (size_t cut : {size_t{10}, zs.size() / 2, zs.size() - 1}) {
    EXPECT_FALSE(Apply(zs.substr(0, cut), kTarZst).has_value()) << "zstd cut at " << cut;
  }
  EXPECT_FALSE(Apply(tar.substr(0, 1000)).has_value()) << "plain tar cut mid-file";
  std::string bad = gz;
  bad[bad.size() / 2] ^= 0x55;
  EXPECT_FALSE(Apply(bad, kTarGz).has_value());
  EXPECT_FALSE(Exists(tmp_ + "/a/escape-attempt"));
}

// gzip as Go's gzip.Reader reads it: concatenated members form one stream; a bad CRC or
// bytes after the last member that are not a gzip header are errors, not silently ignored.
TEST_F(DiffApplyTest, GzipMembersChecksumsAndTrailingBytes) {
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 5);
  std::string tar = Tar().File("a", big).File("b", "second\n").Finish();
  size_t half = tar.size() / 2 + 77;  // split mid-entry: members need not align with entries
  std::string two = Gzip(tar.substr(0, half)) + Gzip(tar.substr(half));
  auto r = Apply(two, kTarGz);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->digest, content::DigestOf(tar));
  EXPECT_TRUE(ReadFile(In("a")) == big);
  EXPECT_EQ(ReadFile(In("b")), "second\n");

  std::string gz = Gzip(tar);
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 8] ^= 0x01;  // trailer: CRC32 then ISIZE
  auto c = Apply(bad_crc, kTarGz);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument) << c.error().ToString();

  auto g = Apply(gz + "this is not a gzip header", kTarGz);
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error().code(), Code::kInvalidArgument) << g.error().ToString();
  // Fewer bytes than a gzip header: Go reports an unexpected EOF.
  auto s = Apply(gz + "junk", kTarGz);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kDataLoss) << s.error().ToString();
}

// An entry failing early in a long stream returns at once; the read-ahead thread stops.
TEST_F(DiffApplyTest, EarlyErrorInLongStream) {
  Tar t;
  t.File(".wh..", "");  // an escaping whiteout: InvalidArgument
  t.File("filler", std::string(8 << 20, 'f'));
  std::string gz = Gzip(t.Finish());
  for (int i = 0; i < 20; ++i) {
    auto r = Apply(gz, kTarGz);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
  }
}

// T7: absurd sizes and names are refused without allocating for them.
TEST_F(DiffApplyTest, T7_HugeSizeAndLongNames) {
  Tar t;
  t.Add({.name = "big", .type = '0', .pax = {{"size", "1099511627776"}}});
  auto r = Apply(t.Finish());
  ASSERT_FALSE(r.has_value());
  Tar t2;
  t2.File(std::string(PATH_MAX + 10, 'n'), "x");
  r = Apply(t2.Finish());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  // Deep but legal nesting works.
  std::string deep;
  for (int i = 0; i < 1000; ++i) deep += "d/";
  ASSERT_TRUE(Apply(Tar().File(deep + "f", "x").Finish()).has_value());
  EXPECT_EQ(ReadFile(In(deep + "f")), "x");
}

TEST_F(DiffApplyTest, UnknownEntryTypeIsAnError) {
  Tar t;
  t.Add({.name = "weird", .type = 'Q'});
  auto r = Apply(t.Finish());
  // libarchive may map unknown types to regular files (POSIX says so); either way nothing
  // escapes and the call does not crash.
  if (!r.has_value()) {
    EXPECT_NE(r.error().code(), Code::kOk);
  }
}

TEST_F(DiffApplyTest, EmptyBlobIsAnEmptyLayer) {
  auto r = Apply(Tar().Finish());
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->size, 1024);
}

}  // namespace
}  // namespace berth::diff

namespace berth::diff {
namespace {

// A layer building a tree `segments` × `per` directories deep with every tar name shorter
// than PATH_MAX (issue 12 item 1): each segment starts at a symlink to the bottom of the one
// before ("s1" -> "top/d/…/d", "s2" -> "s1/d/…/d", …) and adds one directory entry per level.
// Then, when `whiteout`, it whites out "top", which has to remove the whole depth.
std::string DeepLayer(int segments, int per, bool whiteout) {
  Tar t;
  t.Dir("top");
  std::string base = "top";
  for (int s = 0; s < segments; ++s) {
    std::string path = base;
    for (int i = 0; i < per; ++i) {
      path += "/d";
      t.Dir(path);
    }
    std::string link = "s" + std::to_string(s + 1);
    t.Symlink(link, path);
    base = link;
  }
  t.File(base + "/bottom", "x");
  if (whiteout) t.File(".wh.top", "");
  return Gzip(t.Finish());
}

class DeepLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown)";
    tmp_ = berth::testing::DeepTreeTempDir("berth-deep-apply");
    ASSERT_FALSE(tmp_.empty());
    root_ = tmp_ + "/root";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!tmp_.empty()) {
      EXPECT_TRUE(RemoveAll(tmp_).ok());
    }
  }
  // Applies on a thread with a 512 KiB stack: the recursive remover needed ~250 bytes a level.
  Result<ApplyResult> ApplySmallStack(const std::string& gz) {
    Result<ApplyResult> r = std::unexpected(Internal("not run"));
    berth::testing::RunOnSmallStack(512 << 10, [&] {
      StringReader reader(gz);
      r = ApplyLayer(reader, kTarGz, root_);
    });
    return r;
  }
  bool Exists(const std::string& rel) {
    struct stat st;
    return ::lstat((root_ + "/" + rel).c_str(), &st) == 0;
  }
  std::string tmp_, root_;
};

// 3,000 levels (deeper than any tar name reaches) whited out: removed, without recursion.
TEST_F(DeepLayerTest, WhiteoutOfATreeDeeperThanPathMaxRemovesIt) {
  auto r = ApplySmallStack(DeepLayer(2, 1500, /*whiteout=*/true));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_FALSE(Exists("top"));
  EXPECT_TRUE(Exists("s2")) << "the (now dangling) symlinks stay";
}

// Deeper than the bound: a clear InvalidArgument, the daemon's thread survives, and the tree
// can still be removed (by the snapshot's removal, which has no bound).
TEST_F(DeepLayerTest, WhiteoutDeeperThanTheBoundIsInvalidArgument) {
  const int per = 1500, segments = static_cast<int>(kMaxRemoveDepth) / per + 1;
  auto r = ApplySmallStack(DeepLayer(segments, per, /*whiteout=*/true));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find("deeper than " + std::to_string(kMaxRemoveDepth)),
            std::string::npos)
      << r.error().ToString();
  ASSERT_TRUE(RemoveAll(root_ + "/top").ok());
  EXPECT_FALSE(Exists("top"));
}

// An entry replacing the deep directory removes it the same way; so does an opaque marker in
// its parent (naive mode).
TEST_F(DeepLayerTest, ReplacingOrOpaqueingADeepTreeRemovesIt) {
  std::string gz = DeepLayer(2, 1500, /*whiteout=*/false);
  ASSERT_TRUE(ApplySmallStack(gz).has_value());
  ASSERT_TRUE(Exists("s2/bottom"));
  auto r = ApplySmallStack(Gzip(Tar().File("top", "now a file").Finish()));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  struct stat st;
  ASSERT_EQ(::lstat((root_ + "/top").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));

  ASSERT_TRUE(ApplySmallStack(Gzip(Tar().File("top", "").Finish())).has_value());
  ASSERT_EQ(::unlink((root_ + "/top").c_str()), 0);
  ASSERT_TRUE(ApplySmallStack(gz).has_value());
  r = ApplySmallStack(Gzip(Tar().Dir("keep").File(".wh..wh..opq", "").Finish()));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_FALSE(Exists("top"));
  EXPECT_TRUE(Exists("keep"));
}

// Item 5: one expansion bound for every decompressor. A 70 MiB file of zeros is a few KB of
// zstd: past max(1100 × size, 64 MiB) it fails with InvalidArgument before writing it all.
TEST_F(DiffApplyTest, ZstdExpansionIsBounded) {
  std::string tar = Tar().File("zeros", std::string(70 << 20, '\0')).Finish();
  std::string zs = Zstd(tar);
  ASSERT_LT(zs.size(), 64u << 10);
  auto r = Apply(zs, kTarZst);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find("max_expansion_ratio"), std::string::npos)
      << r.error().ToString();
  // The same setting serves gzip: deflate's own ~1032:1 passes the default ratio, a lower
  // configured ratio stops it too.
  std::string gz = Gzip(tar);
  StringReader low(gz);
  r = ApplyLayer(low, kTarGz, root_, ApplyOptions{.max_expansion_ratio = 100});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
  ASSERT_TRUE(RemoveAll(In("zeros")).ok());
  // Turned off (0), zstd is unbounded again.
  StringReader off(zs);
  r = ApplyLayer(off, kTarZst, root_, ApplyOptions{.max_expansion_ratio = 0});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->size, static_cast<int64_t>(tar.size()));
}

TEST(MaxDecompressedSize, RatioFloorAndOff) {
  EXPECT_EQ(MaxDecompressedSize(1 << 20, 1100), int64_t{1100} << 20);
  EXPECT_EQ(MaxDecompressedSize(1000, 1100), static_cast<int64_t>(kMinExpansionBytes));
  EXPECT_EQ(MaxDecompressedSize(1 << 20, 0), INT64_MAX);
  EXPECT_EQ(MaxDecompressedSize(INT64_MAX / 2, 1100), INT64_MAX);
}

}  // namespace
}  // namespace berth::diff
