// Diff.Diff with the real ctr (`ctr snapshots diff`) against berthd, for both snapshotters,
// and against real containerd 1.6: the same two directories diffed by both daemons must give
// the same tar entries, byte for byte (whiteout times aside), and containerd must apply the
// layers berthd writes.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "harness.h"

extern char** environ;

namespace berth::testing {
namespace {

namespace fs = std::filesystem;
namespace diffapi = containerd::services::diff::v1;
namespace snapapi = containerd::services::snapshots::v1;

constexpr char kNamespaceHeader[] = "containerd-namespace";
constexpr char kTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kTarGz[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kTarZst[] = "application/vnd.oci.image.layer.v1.tar+zstd";

std::string Sha256(const std::string& data) {
  RunResult r = berth::testing::Run({"sha256sum"}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return "sha256:" + r.out.substr(0, 64);
}

std::string Gunzip(const std::string& gz) {
  RunResult r = berth::testing::Run({"gzip", "-dc"}, gz);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

// Names in a tar, as GNU tar lists them (which also checks the archive is well-formed).
std::vector<std::string> TarNames(const std::string& tar) {
  RunResult r = berth::testing::Run({"tar", "-tf", "-"}, tar);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return Lines(r.out);
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string ReadAll(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& p, const std::string& data, mode_t mode = 0644) {
  std::ofstream(p, std::ios::binary) << data;
  ASSERT_EQ(::chmod(p.c_str(), mode), 0) << p;
}

// What a layer must reproduce, one line per path (directory times excluded).
std::map<std::string, std::string> Describe(const std::string& root) {
  std::map<std::string, std::string> out;
  std::map<std::pair<dev_t, ino_t>, std::string> first;
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    paths.push_back(it->path());
  }
  std::sort(paths.begin(), paths.end());
  for (const fs::path& p : paths) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || S_ISSOCK(st.st_mode)) continue;
    std::string rel = fs::relative(p, root).string();
    std::ostringstream o;
    o << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid;
    if (!S_ISDIR(st.st_mode)) o << " t=" << st.st_mtim.tv_sec;
    if (S_ISREG(st.st_mode))
      o << " " << ReadAll(p).size() << ":" << std::hash<std::string>()(ReadAll(p));
    if (S_ISLNK(st.st_mode)) o << " -> " << fs::read_symlink(p).string();
    if (S_ISCHR(st.st_mode)) o << " dev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
    char cap[64];
    if (ssize_t n = ::lgetxattr(p.c_str(), "security.capability", cap, sizeof cap); n > 0) {
      o << " cap=" << n;
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      o << " links=" << first.try_emplace({st.st_dev, st.st_ino}, rel).first->second;
    }
    out[rel] = o.str();
  }
  return out;
}

// A mount made with mount(8), detached on destruction.
struct ScopedMount {
  std::string target;
  ScopedMount() = default;
  ScopedMount(const ScopedMount&) = delete;
  ScopedMount& operator=(const ScopedMount&) = delete;
  ~ScopedMount() {
    if (!target.empty()) ::umount2(target.c_str(), MNT_DETACH);
  }
};

std::shared_ptr<grpc::Channel> Dial(const std::string& socket) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args);
}

void Prepare(grpc::ClientContext* ctx) {
  ctx->AddMetadata(kNamespaceHeader, "default");
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

containerd::types::Mount BindMount(const std::string& dir, bool ro) {
  containerd::types::Mount m;
  m.set_type("bind");
  m.set_source(dir);
  m.add_options("rbind");
  m.add_options(ro ? "ro" : "rw");
  return m;
}

// Diff.Diff over two directories (bind mounts), as a client of either daemon sends it.
grpc::Status DiffDirs(const std::string& socket, const std::string& lower, const std::string& upper,
                      const std::string& media_type, containerd::types::Descriptor* out) {
  auto stub = diffapi::Diff::NewStub(Dial(socket));
  grpc::ClientContext ctx;
  Prepare(&ctx);
  diffapi::DiffRequest req;
  *req.add_left() = BindMount(lower, true);
  *req.add_right() = BindMount(upper, true);
  req.set_media_type(media_type);
  (*req.mutable_labels())["containerd.io/gc.root"] = "2024-01-01T00:00:00Z";
  diffapi::DiffResponse resp;
  grpc::Status s = stub->Diff(&ctx, req, &resp);
  *out = resp.diff();
  return s;
}

grpc::Status ApplyTo(const std::string& socket, const containerd::types::Descriptor& desc,
                     const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
                     containerd::types::Descriptor* applied) {
  auto stub = diffapi::Diff::NewStub(Dial(socket));
  grpc::ClientContext ctx;
  Prepare(&ctx);
  diffapi::ApplyRequest req;
  *req.mutable_diff() = desc;
  *req.mutable_mounts() = mounts;
  diffapi::ApplyResponse resp;
  grpc::Status s = stub->Apply(&ctx, req, &resp);
  *applied = resp.applied();
  return s;
}

// The base tree and the changes made on top of it, written through whatever `root` is (a
// mounted snapshot or a plain directory).
void WriteBase(const std::string& root) {
  fs::create_directories(root + "/etc");
  WriteFile(root + "/etc/conf", "v1\n");
  WriteFile(root + "/etc/gone", "bye\n");
  WriteFile(root + "/etc/keep", "keep\n");
  fs::create_directories(root + "/olddir/sub");
  WriteFile(root + "/olddir/sub/f", "f");
  fs::create_directories(root + "/bin");
  WriteFile(root + "/bin/tool", "#!/bin/sh\n", 0755);
  WriteFile(root + "/h1", "linked\n");
  ASSERT_EQ(::link((root + "/h1").c_str(), (root + "/h2").c_str()), 0);
  fs::create_directories(root + "/u/deep");
  WriteFile(root + "/u/deep/f", "1");
  WriteFile(root + "/file2dir", "f");
}

void ChangeTop(const std::string& root) {
  WriteFile(root + "/etc/conf", "v2, longer\n");
  fs::remove(root + "/etc/gone");
  fs::remove_all(root + "/olddir");
  ASSERT_EQ(::chmod((root + "/bin/tool").c_str(), 04700), 0);
  ASSERT_EQ(::lchown((root + "/bin/tool").c_str(), 1000, 1000), 0);
  fs::create_directories(root + "/new/a");
  WriteFile(root + "/new/a/file", std::string(100000, 'n'));
  ASSERT_EQ(::symlink("../etc/conf", (root + "/new/link").c_str()), 0);
  ASSERT_EQ(::link((root + "/new/a/file").c_str(), (root + "/new/hard").c_str()), 0);
  WriteFile(root + "/u/deep/f", "2");
  fs::remove(root + "/file2dir");
  fs::create_directories(root + "/file2dir");
  WriteFile(root + "/file2dir/in", "in");
}

class CtrDiffTest : public DaemonTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
  }
  RunResult Snap(std::vector<std::string> args) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", GetParam()});
    return Ctr(args);
  }

  // Mounts snapshot `key` with mount(8), the way `ctr snapshots mounts` prints it.
  void MountKey(const std::string& key, ScopedMount* m) {
    std::string target = tmp_ + "/mnt-" + key;
    fs::create_directories(target);
    RunResult r = Snap({"mounts", target, key});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const std::string& line : Lines(r.out)) {
      RunResult mr = berth::testing::Run(Cells(line));
      ASSERT_EQ(mr.exit_code, 0) << line << ": " << mr.err;
      m->target = target;
    }
  }

  // base-c (committed base) and top-c (committed base + ChangeTop).
  void BuildPair() {
    ASSERT_EQ(Snap({"prepare", "base"}).exit_code, 0);
    {
      ScopedMount m;
      ASSERT_NO_FATAL_FAILURE(MountKey("base", &m));
      ASSERT_NO_FATAL_FAILURE(WriteBase(m.target));
    }
    ASSERT_EQ(Snap({"commit", "base-c", "base"}).exit_code, 0);
    ASSERT_EQ(Snap({"prepare", "top", "base-c"}).exit_code, 0);
    {
      ScopedMount m;
      ASSERT_NO_FATAL_FAILURE(MountKey("top", &m));
      ASSERT_NO_FATAL_FAILURE(ChangeTop(m.target));
    }
    ASSERT_EQ(Snap({"commit", "top-c", "top"}).exit_code, 0);
  }

  // The `ctr content ls` row of `digest`, or "".
  std::string ContentRow(const std::string& digest) {
    RunResult r = Ctr({"content", "ls"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const std::string& line : Lines(r.out)) {
      if (line.starts_with(digest)) return line;
    }
    return "";
  }
};

TEST_P(CtrDiffTest, SnapshotsDiffMakesALayerThatReproducesTheSnapshot) {
  ASSERT_NO_FATAL_FAILURE(BuildPair());
  RunResult d = Snap({"diff", "--keep", "--label", "test.label=yes", "top-c"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  const std::string& blob = d.out;
  ASSERT_TRUE(blob.starts_with("\x1f\x8b")) << "gzip by default";
  const std::string digest = Sha256(blob);
  const std::string tar = Gunzip(blob);
  const std::string diff_id = Sha256(tar);

  std::vector<std::string> names = TarNames(tar);
  for (const char* want : {"etc/", "etc/conf", "etc/.wh.gone", ".wh.olddir", "bin/tool", "new/",
                           "new/a/", "new/a/file", "new/link", "new/hard", "u/", "u/deep/",
                           "u/deep/f", "file2dir/", "file2dir/in"}) {
    EXPECT_TRUE(Contains(names, want)) << want << " not in:\n"
                                       << berth::testing::Run({"tar", "-tvf", "-"}, tar).out;
  }
  for (const char* not_want : {"etc/keep", "h1", "h2", "olddir/sub/f", "olddir/"}) {
    EXPECT_FALSE(Contains(names, not_want)) << not_want;
  }

  // Stored with the labels containerd puts on it (--keep adds gc.root).
  std::string row = ContentRow(digest);
  ASSERT_FALSE(row.empty()) << Ctr({"content", "ls"}).out;
  EXPECT_NE(row.find("containerd.io/uncompressed=" + diff_id), std::string::npos) << row;
  EXPECT_NE(row.find("test.label=yes"), std::string::npos) << row;
  EXPECT_NE(row.find("containerd.io/gc.root="), std::string::npos) << row;
  EXPECT_TRUE(Lines(Ctr({"content", "active"}).out).size() <= 1) << "no ingest left behind";

  // Applying it on the parent gives the same tree as the snapshot diffed.
  ASSERT_EQ(Snap({"prepare", "applied", "base-c"}).exit_code, 0);
  snapapi::MountsResponse mounts;
  {
    auto stub = snapapi::Snapshots::NewStub(Dial(socket_));
    grpc::ClientContext ctx;
    Prepare(&ctx);
    snapapi::MountsRequest req;
    req.set_snapshotter(GetParam());
    req.set_key("applied");
    ASSERT_TRUE(stub->Mounts(&ctx, req, &mounts).ok());
  }
  containerd::types::Descriptor desc, applied;
  desc.set_media_type(kTarGz);
  desc.set_digest(digest);
  desc.set_size(static_cast<int64_t>(blob.size()));
  grpc::Status s = ApplyTo(socket_, desc, mounts.mounts(), &applied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(applied.digest(), diff_id);
  ASSERT_EQ(Snap({"view", "top-view", "top-c"}).exit_code, 0);
  {
    ScopedMount a, t;
    ASSERT_NO_FATAL_FAILURE(MountKey("applied", &a));
    ASSERT_NO_FATAL_FAILURE(MountKey("top-view", &t));
    auto got = Describe(a.target);
    auto want = Describe(t.target);
    EXPECT_EQ(got, want);
    EXPECT_TRUE(want.contains("new/hard") && want.contains("u/deep/f")) << "trees were read";
  }
  EXPECT_TRUE(fs::is_empty(root_ + "/tmpmounts")) << "temp mount points removed";
}

TEST_P(CtrDiffTest, MediaTypesRefsAndErrors) {
  ASSERT_NO_FATAL_FAILURE(BuildPair());
  // Two snapshots named: lower first. Uncompressed: no uncompressed label (as containerd).
  RunResult d = Snap({"diff", "--keep", "--media-type", kTar, "base-c", "top-c"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_TRUE(Contains(TarNames(d.out), "etc/.wh.gone"));
  std::string row = ContentRow(Sha256(d.out));
  ASSERT_FALSE(row.empty());
  EXPECT_EQ(row.find("containerd.io/uncompressed"), std::string::npos) << row;

  // The reverse direction turns additions into whiteouts.
  d = Snap({"diff", "--keep", "--media-type", kTar, "top-c", "base-c"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_TRUE(Contains(TarNames(d.out), ".wh.new"));
  EXPECT_TRUE(Contains(TarNames(d.out), "etc/gone"));

  d = Snap({"diff", "--keep", "--media-type", kTarZst, "--ref", "my-diff-ref", "top-c"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_TRUE(d.out.starts_with("\x28\xb5\x2f\xfd")) << "zstd frame";
  RunResult plain = berth::testing::Run({"zstd", "-dc"}, d.out);
  row = ContentRow(Sha256(d.out));
  EXPECT_NE(row.find("containerd.io/uncompressed=sha256:"), std::string::npos) << row;
  if (plain.exit_code == 0) {
    EXPECT_NE(row.find("containerd.io/uncompressed=" + Sha256(plain.out)), std::string::npos);
  }
  RunResult active = Ctr({"content", "active"});
  EXPECT_EQ(active.out.find("my-diff-ref"), std::string::npos) << active.out;

  d = Snap({"diff", "--media-type", "application/x-foo", "top-c"});
  EXPECT_NE(d.exit_code, 0);
  EXPECT_NE(d.err.find("unsupported diff media type: application/x-foo: not implemented"),
            std::string::npos)
      << d.err;
  d = Snap({"diff", "no-such-snapshot"});
  EXPECT_NE(d.exit_code, 0);
  EXPECT_NE(d.err.find("not found"), std::string::npos) << d.err;
  EXPECT_TRUE(fs::is_empty(root_ + "/tmpmounts"));
}

INSTANTIATE_TEST_SUITE_P(Both, CtrDiffTest, ::testing::Values("overlayfs", "native"));

// ---------------------------------------------------------------------------------------------
// Real containerd 1.6 on its own root, state and socket.

// One tar entry with every block that belongs to it (its PAX header included).
struct RawEntry {
  std::string name;
  char type = 0;
  std::string bytes;
};

std::vector<RawEntry> SplitTar(const std::string& tar, std::string* rest) {
  std::vector<RawEntry> out;
  size_t off = 0;
  std::string pending, pax_path;
  while (off + 512 <= tar.size()) {
    std::string_view h(tar.data() + off, 512);
    if (h == std::string(512, '\0')) break;
    int64_t size = std::strtoll(std::string(h.substr(124, 12)).c_str(), nullptr, 8);
    size_t total = 512 + (static_cast<size_t>(size) + 511) / 512 * 512;
    pending += tar.substr(off, total);
    if (h[156] == 'x') {
      std::string body = tar.substr(off + 512, static_cast<size_t>(size));
      for (size_t p = 0; p < body.size();) {
        size_t sp = body.find(' ', p);
        size_t len = std::stoul(body.substr(p, sp - p));
        std::string rec = body.substr(sp + 1, len - (sp - p) - 2);
        if (rec.starts_with("path=")) pax_path = rec.substr(5);
        p += len;
      }
    } else {
      std::string name(h.substr(0, 100)), prefix(h.substr(345, 155));
      name.resize(std::strlen(name.c_str()));
      prefix.resize(std::strlen(prefix.c_str()));
      if (!prefix.empty()) name = prefix + "/" + name;
      out.push_back({pax_path.empty() ? name : pax_path, h[156], pending});
      pending.clear();
      pax_path.clear();
    }
    off += total;
  }
  *rest = tar.substr(off);
  return out;
}

bool IsWhiteout(const std::string& name) {
  size_t slash = name.rfind('/');
  return name.compare(slash == std::string::npos ? 0 : slash + 1, 4, ".wh.") == 0;
}

// Lower as a plain directory, with what the snapshot test cannot easily make: devices,
// capabilities, long and non-ASCII names, big ids. Upper and the apply targets start as
// `cp -a` copies of it (times to the nanosecond, links, xattrs), so unchanged files compare
// equal as they would between snapshots.
void BuildLower(const std::string& root) {
  ASSERT_NO_FATAL_FAILURE(WriteBase(root));
  fs::create_directories(root + "/dev");
  ASSERT_EQ(::mknod((root + "/dev/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  WriteFile(root + "/same-size", "aaaa");
  struct timespec ts[2] = {{1700000000, 0}, {1700000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (root + "/same-size").c_str(), ts, 0), 0);
  fs::create_directories(root + "/" + std::string(110, 'q'));
  WriteFile(root + "/" + std::string(110, 'q') + "/gone", "g");
}

void CopyTree(const std::string& from, const std::string& to) {
  RunResult r = berth::testing::Run({"cp", "-a", from, to});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

void ChangeRich(const std::string& root) {
  ASSERT_NO_FATAL_FAILURE(ChangeTop(root));
  WriteFile(root + "/same-size", "bbbb");  // same size and whole-second mtime: bytes decide
  struct timespec ts[2] = {{1700000000, 0}, {1700000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (root + "/same-size").c_str(), ts, 0), 0);
  ASSERT_EQ(::mknod((root + "/dev/fifo").c_str(), S_IFIFO | 0600, 0), 0);
  ASSERT_EQ(::mknod((root + "/dev/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
  fs::remove(root + "/dev/null");
  fs::remove(root + "/" + std::string(110, 'q') + "/gone");
  WriteFile(root + "/cap", "c", 0755);
  std::string cap(20, '\0');
  cap[0] = 1;
  cap[3] = 2;
  cap[5] = 0x04;
  ASSERT_EQ(::setxattr((root + "/cap").c_str(), "security.capability", cap.data(), cap.size(), 0),
            0);
  WriteFile(root + "/" + std::string(130, 'L'), "long");
  WriteFile(root + "/caf\xc3\xa9", "utf8");
  WriteFile(root + "/bigid", "b");
  ASSERT_EQ(::lchown((root + "/bigid").c_str(), 3000000, 3000001), 0);
  ASSERT_EQ(::link((root + "/etc/keep").c_str(), (root + "/keep-link").c_str()), 0);
}

class ContainerdAgreesTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
  }
};

TEST_F(ContainerdAgreesTest, SameEntriesAsContainerdAndContainerdAppliesOurLayers) {
  if (::access("/usr/bin/containerd", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/containerd";
  ContainerdDaemon ctd;
  ASSERT_TRUE(ctd.Start(tmp_ + "/ctd")) << ctd.Log();
  const std::string lower = tmp_ + "/lower", upper = tmp_ + "/upper";
  fs::create_directories(lower);
  ASSERT_NO_FATAL_FAILURE(BuildLower(lower));
  ASSERT_NO_FATAL_FAILURE(CopyTree(lower, upper));
  ASSERT_NO_FATAL_FAILURE(ChangeRich(upper));

  containerd::types::Descriptor ours, theirs;
  grpc::Status s = DiffDirs(socket_, lower, upper, kTar, &ours);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = DiffDirs(ctd.socket(), lower, upper, kTar, &theirs);
  ASSERT_TRUE(s.ok()) << s.error_message() << ctd.Log();
  EXPECT_EQ(ours.media_type(), theirs.media_type());

  RunResult a = Ctr({"content", "get", ours.digest()});
  RunResult b = ctd.Ctr({"content", "get", theirs.digest()});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::string rest_a, rest_b;
  std::vector<RawEntry> ea = SplitTar(a.out, &rest_a), eb = SplitTar(b.out, &rest_b);
  std::vector<std::string> na, nb;
  for (const auto& e : ea) na.push_back(e.name);
  for (const auto& e : eb) nb.push_back(e.name);
  ASSERT_EQ(na, nb) << "entry order differs";
  const std::vector<std::string> expected = {"cap",
                                             "bigid",
                                             "keep-link",
                                             "etc/keep",
                                             "dev/",
                                             "dev/zero",
                                             "dev/fifo",
                                             "dev/.wh.null",
                                             "same-size",
                                             "new/hard",
                                             "bin/tool",
                                             ".wh.olddir",
                                             "caf\xc3\xa9",
                                             std::string(130, 'L'),
                                             std::string(110, 'q') + "/.wh.gone"};
  for (const std::string& want : expected) {
    EXPECT_TRUE(Contains(na, want)) << want << " not among the entries compared";
  }
  for (size_t i = 0; i < ea.size(); ++i) {
    EXPECT_NE(ea[i].name, "h1") << "unchanged, yet written";
    EXPECT_EQ(ea[i].bytes.size(), eb[i].bytes.size()) << ea[i].name;
    if (IsWhiteout(ea[i].name) && ea[i].bytes.size() == 512 && eb[i].bytes.size() == 512) {
      // A whiteout's mtime is "now" on each side: compare all but mtime and checksum.
      std::string x = ea[i].bytes, y = eb[i].bytes;
      x.replace(136, 20, 20, ' ');
      y.replace(136, 20, 20, ' ');
      EXPECT_TRUE(x == y) << "whiteout header differs: " << ea[i].name;
      continue;
    }
    EXPECT_TRUE(ea[i].bytes == eb[i].bytes) << "entry bytes differ: " << ea[i].name;
  }
  EXPECT_EQ(rest_a, rest_b) << "end of archive";
  EXPECT_EQ(rest_a, std::string(1024, '\0'));

  // containerd applies our layers (plain and gzip) onto a copy of lower and gets upper.
  containerd::types::Descriptor gz;
  s = DiffDirs(socket_, lower, upper, kTarGz, &gz);
  ASSERT_TRUE(s.ok()) << s.error_message();
  RunResult gzblob = Ctr({"content", "get", gz.digest()});
  ASSERT_EQ(gzblob.exit_code, 0);
  const std::string gz_diff_id = Sha256(Gunzip(gzblob.out));
  struct Case {
    containerd::types::Descriptor desc;
    std::string blob;
    std::string diff_id;
  };
  for (const Case& c : {Case{ours, a.out, ours.digest()}, Case{gz, gzblob.out, gz_diff_id}}) {
    SCOPED_TRACE(c.desc.media_type());
    // Both diffs made within one second are the same bytes (whiteout mtimes are whole
    // seconds), and containerd has the blob already; ctr would then not read its stdin.
    if (ctd.Ctr({"content", "ls", "-q"}).out.find(c.desc.digest()) == std::string::npos) {
      RunResult in =
          ctd.Ctr({"content", "ingest", "--expected-size", std::to_string(c.desc.size()),
                   "--expected-digest", c.desc.digest(), "from-berth-" + c.desc.digest()},
                  "default", 120, c.blob);
      ASSERT_EQ(in.exit_code, 0) << in.err;
    }
    const std::string target = tmp_ + "/target-" + c.desc.digest().substr(7, 8);
    ASSERT_NO_FATAL_FAILURE(CopyTree(lower, target));
    google::protobuf::RepeatedPtrField<containerd::types::Mount> mounts;
    *mounts.Add() = BindMount(target, false);
    containerd::types::Descriptor applied;
    s = ApplyTo(ctd.socket(), c.desc, mounts, &applied);
    ASSERT_TRUE(s.ok()) << s.error_message() << ctd.Log();
    EXPECT_EQ(applied.digest(), c.diff_id);
    auto got = Describe(target);
    auto want = Describe(upper);
    EXPECT_EQ(got, want);
  }
  ctd.Stop();
}

}  // namespace
}  // namespace berth::testing
