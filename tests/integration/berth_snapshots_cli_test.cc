// `berth snapshots` and `berth images mount/unmount` against a real berthd, cross-checked with
// the real ctr: both must see the same keys, parents, kinds, labels, sizes and mounts, and
// agree on an image's chain ID whichever of the two unpacked it.
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Every mount point in this mount namespace, in mount order (mountinfo's octal escapes
// undone; test paths have none anyway).
std::vector<std::string> MountPoints() {
  std::vector<std::string> out;
  for (const auto& line : Lines(ReadText("/proc/self/mountinfo"))) {
    auto cells = Cells(line);
    if (cells.size() > 4) out.push_back(cells[4]);
  }
  return out;
}

bool MountedAt(const std::string& path) {
  auto points = MountPoints();
  return std::find(points.begin(), points.end(), path) != points.end();
}

std::string Sha256Of(const std::string& data, const std::string& scratch) {
  std::ofstream(scratch, std::ios::binary | std::ios::trunc) << data;
  RunResult r = Run({"sha256sum", "--", scratch}, "", 60);
  fs::remove(scratch);
  return r.out.size() >= 64 ? "sha256:" + r.out.substr(0, 64) : "";
}

// An OCI layout built by hand, for images with several layers, gzip layers, whiteouts and
// more than one platform (the harness's BuildOciImage makes one plain layer).
class Layout {
 public:
  explicit Layout(std::string dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_ + "/oci/blobs/sha256");
  }

  json AddBlob(const std::string& media_type, const std::string& data) {
    std::string digest = Sha256Of(data, dir_ + "/blob.tmp");
    std::ofstream(dir_ + "/oci/blobs/sha256/" + digest.substr(7), std::ios::binary) << data;
    return {
        {"mediaType", media_type}, {"digest", digest}, {"size", static_cast<int64_t>(data.size())}};
  }

  // A layer holding `files` (path → content); a ".wh." name is a whiteout. Returns the
  // descriptor; `diff_id` gets the uncompressed digest.
  json AddLayer(const std::map<std::string, std::string>& files, bool gzip, std::string& diff_id) {
    std::string root = dir_ + "/layer" + std::to_string(++layers_);
    std::vector<std::string> argv = {"tar", "--numeric-owner", "-C", root, "-cf", root + ".tar"};
    for (const auto& [path, content] : files) {
      fs::create_directories(fs::path(root + "/" + path).parent_path());
      std::ofstream(root + "/" + path, std::ios::binary) << content;
      argv.push_back(path);
    }
    EXPECT_EQ(Run(argv, "", 30).exit_code, 0);
    std::string tar = ReadText(root + ".tar");
    diff_id = Sha256Of(tar, dir_ + "/blob.tmp");
    if (!gzip) return AddBlob("application/vnd.oci.image.layer.v1.tar", tar);
    RunResult gz = Run({"gzip", "-n", "-c", root + ".tar"}, "", 30);
    EXPECT_EQ(gz.exit_code, 0) << gz.err;
    return AddBlob("application/vnd.oci.image.layer.v1.tar+gzip", gz.out);
  }

  // A manifest for os/arch over `layers` (with their diff IDs); returns its descriptor with
  // the platform set, ready for an index.
  json AddManifest(const std::string& arch, const std::vector<json>& layers,
                   const std::vector<std::string>& diff_ids) {
    json config = {{"architecture", arch},
                   {"os", "linux"},
                   {"config", json::object()},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    json cfg = AddBlob("application/vnd.oci.image.config.v1+json", config.dump());
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", cfg},
                     {"layers", layers}};
    json desc = AddBlob("application/vnd.oci.image.manifest.v1+json", manifest.dump());
    desc["platform"] = {{"os", "linux"}, {"architecture", arch}};
    return desc;
  }

  // The archive for `ctr images import`, naming an index of `manifests` `name`.
  std::string Write(const std::string& name, const std::vector<json>& manifests) {
    json index = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.oci.image.index.v1+json"},
                  {"manifests", manifests}};
    json desc = AddBlob("application/vnd.oci.image.index.v1+json", index.dump());
    desc["annotations"] = {{"io.containerd.image.name", name},
                           {"org.opencontainers.image.ref.name", "latest"}};
    json top = {{"schemaVersion", 2}, {"manifests", {desc}}};
    std::ofstream(dir_ + "/oci/index.json") << top.dump();
    std::ofstream(dir_ + "/oci/oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
    std::string tar = dir_ + "/image.tar";
    EXPECT_EQ(
        Run({"tar", "-C", dir_ + "/oci", "-cf", tar, "oci-layout", "index.json", "blobs"}, "", 30)
            .exit_code,
        0);
    return tar;
  }

  std::string ChainOf(const std::string& lower, const std::string& diff_id) {
    return Sha256Of(lower + " " + diff_id, dir_ + "/blob.tmp");
  }

 private:
  std::string dir_;
  int layers_ = 0;
};

struct Row {
  std::string parent;
  std::string kind;
  bool operator==(const Row&) const = default;
};
using Rows = std::map<std::string, Row>;

class BerthSnapshotsCliTest : public DaemonTest {
 protected:
  void TearDown() override {
    // Nothing may stay mounted under the temp dir, whatever failed: innermost last mounted.
    if (!tmp_.empty()) {
      auto points = MountPoints();
      for (auto it = points.rbegin(); it != points.rend(); ++it) {
        if (it->starts_with(tmp_ + "/")) ::umount2(it->c_str(), MNT_DETACH);
      }
    }
    DaemonTest::TearDown();
  }

  RunResult Snap(const std::string& sn, std::vector<std::string> args, bool as_json = false) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", sn});
    if (as_json) args.insert(args.begin(), {"--format", "json"});
    return Berth(args);
  }
  RunResult CtrSnap(const std::string& sn, std::vector<std::string> args) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", sn});
    return Ctr(args);
  }

  // `ctr snapshots ls` as key → parent, kind (an empty PARENT leaves two cells).
  Rows CtrRows(const std::string& sn) {
    RunResult r = CtrSnap(sn, {"ls"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Rows rows;
    auto lines = Lines(r.out);
    for (size_t i = 1; i < lines.size(); ++i) {
      auto c = Cells(lines[i]);
      if (c.size() == 3) rows[c[0]] = {c[1], c[2]};
      if (c.size() == 2) rows[c[0]] = {"", c[1]};
    }
    return rows;
  }

  // A two-layer linux/amd64 image (plain tar, then gzip with a whiteout) plus a one-layer
  // linux/arm64 one, behind one index, imported without unpacking.
  void ImportIndexImage() {
    Layout l(tmp_ + "/img");
    std::string d1, d2, d3;
    json l1 = l.AddLayer({{"hello.txt", "hello from layer one\n"},
                          {"etc/gone.txt", "deleted by layer two\n"},
                          {"etc/kept.txt", "kept\n"}},
                         false, d1);
    json l2 = l.AddLayer({{"etc/.wh.gone.txt", ""}, {"etc/two.txt", "from layer two\n"}}, true, d2);
    json arm = l.AddLayer({{"arm.txt", "arm64 only\n"}}, true, d3);
    std::string tar = l.Write(
        image_, {l.AddManifest("amd64", {l1, l2}, {d1, d2}), l.AddManifest("arm64", {arm}, {d3})});
    chain_ = l.ChainOf(d1, d2);
    bottom_ = d1;
    gzip_layer_ = l2["digest"].get<std::string>();
    gzip_diff_id_ = d2;
    RunResult r = Ctr({"images", "import", "--no-unpack", "--all-platforms", tar});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  void ExpectAmd64Tree(const std::string& dir) {
    EXPECT_EQ(ReadText(dir + "/hello.txt"), "hello from layer one\n");
    EXPECT_EQ(ReadText(dir + "/etc/kept.txt"), "kept\n");
    EXPECT_EQ(ReadText(dir + "/etc/two.txt"), "from layer two\n");
    EXPECT_FALSE(fs::exists(dir + "/etc/gone.txt")) << "whiteout not honoured";
    EXPECT_FALSE(fs::exists(dir + "/etc/.wh.gone.txt"));
    EXPECT_FALSE(fs::exists(dir + "/arm.txt"));
  }

  std::string NewDir(const std::string& name) {
    std::string d = tmp_ + "/" + name;
    fs::create_directories(d);
    return d;
  }

  const std::string image_ = "example.com/berth/mount:latest";
  std::string chain_, bottom_, gzip_layer_, gzip_diff_id_;
};

class BerthSnapshotsAgreeTest : public BerthSnapshotsCliTest,
                                public ::testing::WithParamInterface<std::string> {};

// Parent of each key, read back from `berth snapshots tree`'s drawing: every level indents
// four columns ("├── ", "│   ", ...), and a line ends in " (Kind)".
std::map<std::string, std::string> ParentsFromTree(const std::string& out) {
  std::map<std::string, std::string> parents;
  std::vector<std::string> stack;
  for (const auto& line : Lines(out)) {
    size_t pos = 0, depth = 0;
    // Each unit is four display columns; the box characters are 3 bytes of UTF-8 each.
    for (;;) {
      std::string_view rest(line.data() + pos, line.size() - pos);
      if (rest.starts_with("├── ") || rest.starts_with("└── ")) {
        pos += 3 * 3 + 1;
        ++depth;
        break;
      }
      if (rest.starts_with("│   ")) {
        pos += 3 + 3;
      } else if (rest.starts_with("    ")) {
        pos += 4;
      } else {
        break;
      }
      ++depth;
    }
    std::string text = line.substr(pos);
    std::string name = text.substr(0, text.rfind(" ("));
    stack.resize(depth);
    parents[name] = depth == 0 ? "" : stack[depth - 1];
    stack.push_back(name);
  }
  return parents;
}

void ParentsFromJsonTree(const json& nodes, const std::string& parent,
                         std::map<std::string, std::string>& out) {
  for (const auto& n : nodes) {
    std::string name = n["name"].get<std::string>();
    out[name] = parent;
    ParentsFromJsonTree(n["children"], name, out);
  }
}

TEST_P(BerthSnapshotsAgreeTest, LsTreeInfoUsageMountsLabelRm) {
  const std::string sn = GetParam();
  OciImage img = BuildOciImage(tmp_ + "/img", "example.com/berth/snap:latest",
                               {{"hello.txt", "hello\n"}, {"dir/a.txt", "a\n"}});
  RunResult r = Ctr({"images", "import", "--snapshotter", sn, img.tar});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string chain = img.layer_digest;  // one uncompressed layer: chain = diff = blob

  // Built by both tools, in turns.
  r = Snap(sn, {"prepare", "k1", chain});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "k1\n");
  r = Snap(sn, {"commit", "c1", "k1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "c1\n");
  ASSERT_EQ(CtrSnap(sn, {"prepare", "k2", "c1"}).exit_code, 0);
  r = Snap(sn, {"view", "v1", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // ls: the same keys, parents and kinds as ctr's.
  Rows want = CtrRows(sn);
  ASSERT_EQ(want.size(), 4u);
  EXPECT_EQ(want[chain], (Row{"", "Committed"}));
  EXPECT_EQ(want["k2"], (Row{"c1", "Active"}));
  r = Snap(sn, {"ls"}, true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Rows got;
  for (const auto& s : json::parse(r.out)) {
    got[s["name"].get<std::string>()] = {s["parent"].get<std::string>(),
                                         s["kind"].get<std::string>()};
  }
  EXPECT_EQ(got, want) << r.out;
  r = Snap(sn, {"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(Cells(lines[0]), (std::vector<std::string>{"KEY", "PARENT", "KIND", "AGE", "LABELS"}));
  got.clear();
  for (size_t i = 1; i < lines.size(); ++i) {
    auto c = Cells(lines[i]);
    ASSERT_GE(c.size(), 3u) << lines[i];
    got[c[0]] = {c[1] == "-" ? "" : c[1], c[2]};
  }
  EXPECT_EQ(got, want) << r.out;
  r = Snap(sn, {"ls", "-q", "kind==active"});  // filter values are lowercase, as containerd
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "k2\n");

  // tree: the same parent of every key, drawn and as JSON.
  std::map<std::string, std::string> want_parents;
  for (const auto& [k, row] : want) want_parents[k] = row.parent;
  r = Snap(sn, {"tree"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParentsFromTree(r.out), want_parents) << r.out;
  EXPECT_NE(r.out.find(chain + " (Committed)\n└── c1 (Committed)\n    ├── k2 (Active)\n"
                               "    └── v1 (View)\n"),
            std::string::npos)
      << r.out;
  r = Snap(sn, {"tree"}, true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> json_parents;
  ParentsFromJsonTree(json::parse(r.out), "", json_parents);
  EXPECT_EQ(json_parents, want_parents) << r.out;

  // info: what ctr prints, in berth's field names.
  for (const char* key : {"k2", "c1", "v1"}) {
    RunResult c = CtrSnap(sn, {"info", key});
    ASSERT_EQ(c.exit_code, 0) << c.err;
    json cj = json::parse(c.out);
    r = Snap(sn, {"info", key});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json bj = json::parse(r.out);
    EXPECT_EQ(bj["name"], cj["Name"]);
    EXPECT_EQ(bj["parent"], cj.value("Parent", ""));
    EXPECT_EQ(bj["kind"], cj["Kind"]);
    EXPECT_EQ(bj["labels"], cj.value("Labels", json::object())) << key;
    EXPECT_TRUE(bj["labels"].contains("containerd.io/gc.root")) << key << r.out;
    EXPECT_FALSE(bj["created_at"].get<std::string>().empty());
  }

  // usage: the same sizes and inode counts, in bytes (-b) or as JSON.
  RunResult cu = CtrSnap(sn, {"usage", "-b"});
  ASSERT_EQ(cu.exit_code, 0) << cu.err;
  std::map<std::string, std::pair<int64_t, int64_t>> want_usage, got_usage;
  auto ulines = Lines(cu.out);
  for (size_t i = 1; i < ulines.size(); ++i) {
    auto c = Cells(ulines[i]);
    ASSERT_EQ(c.size(), 3u) << cu.out;
    want_usage[c[0]] = {std::stoll(c[1]), std::stoll(c[2])};
  }
  ASSERT_EQ(want_usage.size(), 4u) << cu.out;
  EXPECT_GT(want_usage[chain].first, 0);
  r = Snap(sn, {"usage", "--bytes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ulines = Lines(r.out);
  ASSERT_FALSE(ulines.empty());
  EXPECT_EQ(Cells(ulines[0]), (std::vector<std::string>{"KEY", "SIZE", "INODES"}));
  for (size_t i = 1; i < ulines.size(); ++i) {
    auto c = Cells(ulines[i]);
    ASSERT_EQ(c.size(), 3u) << r.out;
    got_usage[c[0]] = {std::stoll(c[1]), std::stoll(c[2])};
  }
  EXPECT_EQ(got_usage, want_usage) << r.out;
  r = Snap(sn, {"usage", chain, "k2"}, true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json uj = json::parse(r.out);
  ASSERT_EQ(uj.size(), 2u) << r.out;
  EXPECT_EQ(uj[0]["key"], chain);
  EXPECT_EQ(uj[0]["size"].get<int64_t>(), want_usage[chain].first);
  EXPECT_EQ(uj[0]["inodes"].get<int64_t>(), want_usage[chain].second);
  r = Snap(sn, {"usage", "-b", chain});
  ASSERT_EQ(Lines(r.out).size(), 2u) << r.out;
  r = Snap(sn, {"usage", chain});  // human sizes: "4.0 KiB", "12.5 KiB", "512 B"
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto hc = Cells(Lines(r.out).at(1));
  ASSERT_EQ(hc.size(), 4u) << r.out;
  EXPECT_TRUE(hc[2] == "B" || hc[2] == "KiB" || hc[2] == "MiB") << r.out;

  // mounts: the very commands ctr prints, for an active snapshot and a view; prepare
  // --target prints them too.
  for (const char* key : {"k2", "v1"}) {
    RunResult c = CtrSnap(sn, {"mounts", "/mnt/target", key});
    ASSERT_EQ(c.exit_code, 0) << c.err;
    r = Snap(sn, {"mounts", "/mnt/target", key});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, c.out);
  }
  r = Snap(sn, {"mounts", "/mnt/target", "k2"}, true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json mj = json::parse(r.out);
  ASSERT_EQ(mj.size(), 1u);
  EXPECT_EQ(mj[0]["type"], sn == "overlayfs" ? "overlay" : "bind");
  r = Snap(sn, {"prepare", "--target", "/mnt/t3", "k3", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, CtrSnap(sn, {"mounts", "/mnt/t3", "k3"}).out);
  EXPECT_NE(r.out.find("mount -t "), std::string::npos) << r.out;

  // label: set, shown by ctr, removed with "key=".
  r = Snap(sn, {"label", "c1", "foo=bar", "x=y"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("foo=bar"), std::string::npos) << r.out;
  json cj = json::parse(CtrSnap(sn, {"info", "c1"}).out);
  EXPECT_EQ(cj["Labels"]["foo"], "bar");
  r = Snap(sn, {"label", "c1", "foo="}, true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(json::parse(r.out)["labels"].contains("foo")) << r.out;
  cj = json::parse(CtrSnap(sn, {"info", "c1"}).out);
  EXPECT_FALSE(cj["Labels"].contains("foo"));
  EXPECT_EQ(cj["Labels"]["x"], "y");
  RunResult ctr_label = CtrSnap(sn, {"label", "c1"});
  EXPECT_NE(ctr_label.out.find("x=y"), std::string::npos);

  // rm: a parent is refused; the rest go one by one, a missing key failing alone.
  r = Snap(sn, {"rm", "c1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(failed precondition)"), std::string::npos) << r.err;
  r = Snap(sn, {"rm", "k2", "ghost", "k3", "v1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "k2\nk3\nv1\n");
  EXPECT_NE(r.err.find("ghost"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  want = CtrRows(sn);
  EXPECT_EQ(want.size(), 2u);
  EXPECT_TRUE(want.contains("c1") && want.contains(chain));
  r = Snap(sn, {"rm", "c1"}, true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json({"c1"}));
  EXPECT_EQ(Snap(sn, {"ls", "-q"}).out, chain + "\n");
}

INSTANTIATE_TEST_SUITE_P(Both, BerthSnapshotsAgreeTest, ::testing::Values("overlayfs", "native"));

TEST_F(BerthSnapshotsCliTest, UnknownKeysAreNotFound) {
  const std::vector<std::vector<std::string>> cases = {
      {"info", "ghost"},         {"usage", "ghost"},        {"mounts", "/mnt", "ghost"},
      {"label", "ghost", "a=b"}, {"label", "ghost"},        {"rm", "ghost"},
      {"commit", "c", "ghost"},  {"prepare", "p", "ghost"}, {"view", "v", "ghost"}};
  for (const auto& args : cases) {
    RunResult r = Snap("overlayfs", args);
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_NE(r.err.find("ghost"), std::string::npos) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("(not found)"), std::string::npos) << args[0] << ": " << r.err;
  }
  EXPECT_EQ(Snap("overlayfs", {"ls", "-q"}).out, "");  // nothing half-made

  RunResult r = Berth({"snapshots", "--snapshotter", "zfs", "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("snapshotter not loaded: zfs"), std::string::npos) << r.err;
  // The flag may follow the subcommand too.
  ASSERT_EQ(Ctr({"snapshots", "--snapshotter", "native", "prepare", "n1"}).exit_code, 0);
  r = Berth({"snapshot", "ls", "-q", "--snapshotter", "native"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "n1\n");
  r = Berth({"snapshots", "prepare", "--mount", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--mount needs --target"), std::string::npos) << r.err;
}

class BerthImagesMountTest : public BerthSnapshotsCliTest,
                             public ::testing::WithParamInterface<std::string> {};

TEST_P(BerthImagesMountTest, MountUnpacksShowsFilesAndUnmountRmCleansUp) {
  const std::string sn = GetParam();
  ASSERT_NO_FATAL_FAILURE(ImportIndexImage());
  std::string target = NewDir("mnt");

  // Not unpacked yet: berth unpacks both layers itself, then mounts a read-only view.
  RunResult r = Berth({"--format", "json", "images", "mount", "--snapshotter", sn, image_, target});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json mj = json::parse(r.out);
  EXPECT_EQ(mj["chain_id"], chain_);
  EXPECT_EQ(mj["unpacked_layers"], 2);
  EXPECT_EQ(mj["read_only"], true);
  EXPECT_EQ(mj["target"], target);
  EXPECT_EQ(mj["platform"], "linux/amd64");
  EXPECT_TRUE(MountedAt(target));
  ExpectAmd64Tree(target);
  std::ofstream(target + "/new.txt") << "x";
  EXPECT_FALSE(fs::exists(target + "/new.txt")) << "a read-only mount took a write";

  // ctr sees what an unpack leaves: two committed layers, the view named after the target
  // (held by the lease named after it), the image unpacked, the gzip layer's diff ID label.
  Rows rows = CtrRows(sn);
  EXPECT_EQ(rows[bottom_], (Row{"", "Committed"}));
  EXPECT_EQ(rows[chain_], (Row{bottom_, "Committed"}));
  EXPECT_EQ(rows[target], (Row{chain_, "View"}));
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_NE(Ctr({"leases", "ls", "-q"}).out.find(target), std::string::npos);
  RunResult check = Ctr({"images", "check", "--snapshotter", sn, "name==" + image_});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  ASSERT_EQ(Lines(check.out).size(), 2u) << check.out;
  EXPECT_EQ(Cells(Lines(check.out)[1]).back(), "true") << check.out;
  RunResult content = Ctr({"content", "ls"});
  bool labelled = false;
  for (const auto& line : Lines(content.out)) {
    if (line.starts_with(gzip_layer_) &&
        line.find("containerd.io/uncompressed=" + gzip_diff_id_) != std::string::npos) {
      labelled = true;
    }
  }
  EXPECT_TRUE(labelled) << content.out;

  // unmount --rm: no mount, no view, no lease; the image keeps its layers.
  r = Berth({"images", "unmount", "--rm", "--snapshotter", sn, target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, target + "\n");
  EXPECT_FALSE(MountedAt(target));
  EXPECT_EQ(Ctr({"leases", "ls", "-q"}).out.find(target), std::string::npos);
  rows = CtrRows(sn);
  EXPECT_FALSE(rows.contains(target));
  EXPECT_TRUE(rows.contains(chain_) && rows.contains(bottom_));
  EXPECT_TRUE(fs::is_empty(target));

  // Again, writable: nothing left to unpack; writes land in the snapshot.
  r = Berth({"--format", "json", "images", "mount", "--rw", "--snapshotter", sn, image_, target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["unpacked_layers"], 0);
  std::ofstream(target + "/new.txt") << "written";
  EXPECT_EQ(ReadText(target + "/new.txt"), "written");
  EXPECT_EQ(CtrRows(sn)[target], (Row{chain_, "Active"}));
  r = Berth({"images", "unmount", "--rm", "--snapshotter", sn, target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(MountedAt(target));
  EXPECT_FALSE(CtrRows(sn).contains(target));

  // ctr mounts the same image on berth's unpack and prints the same chain ID; berth unmounts
  // ctr's mount (same lease and snapshot names).
  RunResult c = Ctr({"images", "mount", "--snapshotter", sn, image_, target});
  ASSERT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_EQ(Lines(c.out).at(0), chain_);
  ExpectAmd64Tree(target);
  r = Berth({"images", "unmount", "--rm", "--snapshotter", sn, target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(MountedAt(target));
  EXPECT_FALSE(CtrRows(sn).contains(target));
  EXPECT_EQ(Ctr({"leases", "ls", "-q"}).out.find(target), std::string::npos);

  // Another platform of the same index.
  r = Berth({"images", "mount", "--snapshotter", sn, "--platform", "linux/arm64", image_, target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadText(target + "/arm.txt"), "arm64 only\n");
  EXPECT_FALSE(fs::exists(target + "/hello.txt"));
  ASSERT_EQ(Berth({"images", "unmount", "--rm", "--snapshotter", sn, target}).exit_code, 0);
  EXPECT_FALSE(MountedAt(target));
}

INSTANTIATE_TEST_SUITE_P(Both, BerthImagesMountTest, ::testing::Values("overlayfs", "native"));

TEST_F(BerthSnapshotsCliTest, ImagesMountErrors) {
  ASSERT_NO_FATAL_FAILURE(ImportIndexImage());
  std::string target = NewDir("mnt");

  RunResult r = Berth({"images", "mount", "example.com/ghost:latest", target});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ghost"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_EQ(Ctr({"leases", "ls", "-q"}).out, "");  // nothing left behind
  EXPECT_FALSE(MountedAt(target));

  r = Berth({"images", "mount", image_, tmp_ + "/missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;

  r = Berth({"images", "mount", "--platform", "linux/s390x", image_, target});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no manifest for platform linux/s390x"), std::string::npos) << r.err;
  EXPECT_EQ(Ctr({"leases", "ls", "-q"}).out, "");
  EXPECT_FALSE(MountedAt(target));

  ASSERT_EQ(Berth({"images", "mount", image_, target}).exit_code, 0);
  r = Berth({"images", "mount", image_, target});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(failed precondition)"), std::string::npos) << r.err;
  ASSERT_EQ(Berth({"images", "unmount", "--rm", target}).exit_code, 0);
  EXPECT_FALSE(MountedAt(target));

  // Unmounting what is not mounted (or does not exist) is nothing to do, as with ctr.
  r = Berth({"images", "unmount", target});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Berth({"images", "umount", "--rm", tmp_ + "/never"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BerthSnapshotsCliTest, PrepareMountsOnTarget) {
  OciImage img = BuildOciImage(tmp_ + "/img", "example.com/berth/prep:latest");
  ASSERT_EQ(Ctr({"images", "import", img.tar}).exit_code, 0);
  std::string target = NewDir("mnt");
  RunResult r =
      Berth({"snapshots", "prepare", "--target", target, "--mount", "k1", img.layer_digest});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, target + "\n");
  EXPECT_TRUE(MountedAt(target));
  EXPECT_EQ(ReadText(target + "/hello.txt"), "hello from berth\n");
  std::ofstream(target + "/new.txt") << "rw";
  EXPECT_EQ(ReadText(target + "/new.txt"), "rw");
  ASSERT_EQ(Berth({"images", "unmount", target}).exit_code, 0);
  EXPECT_FALSE(MountedAt(target));
  // The write went to the snapshot: a commit carries it.
  ASSERT_EQ(Berth({"snapshots", "commit", "c1", "k1"}).exit_code, 0);
  RunResult u = Berth({"--format", "json", "snapshots", "usage", "c1"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_GT(json::parse(u.out)[0]["size"].get<int64_t>(), 0);
  EXPECT_EQ(Berth({"snapshots", "rm", "c1"}).exit_code, 0);
}

}  // namespace
}  // namespace berth::testing
