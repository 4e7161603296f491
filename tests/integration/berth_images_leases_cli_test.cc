// `berth leases`, `berth images` and `berth events` against a real berthd, cross-checked with
// the real ctr. Images come from two places: the Images gRPC service directly (any target,
// no content needed) and `ctr images import` of a small OCI layout (real content).
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"
#include "harness.h"

extern char** environ;

namespace berth::testing {
namespace {

namespace iv1 = containerd::services::images::v1;

constexpr char kDigestA[] =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kDigestB[] =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
constexpr char kIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";

std::string RowOf(const std::string& table, const std::string& key) {
  for (const auto& line : Lines(table)) {
    if (line == key || line.starts_with(key + " ")) return line;
  }
  return "";
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Parses "2024-05-01T12:00:00Z" (UTC) into a time point.
std::optional<std::chrono::system_clock::time_point> ParseUtc(const std::string& s) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail()) return std::nullopt;
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

// A child process (berth events) writing stdout and stderr to files; killed on destruction.
class Background {
 public:
  bool Start(const std::vector<std::string>& argv, const std::string& out_path) {
    out_path_ = out_path;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, (out_path + ".err").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
    return rc == 0;
  }
  std::string Out() const { return Slurp(out_path_); }
  std::string Err() const { return Slurp(out_path_ + ".err"); }
  // Exit code after SIGTERM-free end (e.g. the daemon went away); -2 if still running.
  int WaitExit(int timeout_ms) {
    for (int i = 0; i < timeout_ms / 50 && pid_ > 0; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -2;
  }
  ~Background() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

 private:
  pid_t pid_ = -1;
  std::string out_path_;
};

class BerthImagesLeasesCliTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
  }

  void TearDown() override {
    channel_.reset();  // an open channel would hold up berthd's graceful stop
    DaemonTest::TearDown();
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& ns = "default") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("containerd-namespace", ns);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }
  std::unique_ptr<iv1::Images::Stub> Images() {
    if (!channel_) {
      channel_ = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
    }
    return iv1::Images::NewStub(channel_);
  }

  grpc::Status CreateImage(const std::string& name, const std::string& digest,
                           const std::string& media_type,
                           const std::map<std::string, std::string>& labels = {},
                           int64_t size = 1234) {
    iv1::CreateImageRequest req;
    iv1::CreateImageResponse resp;
    req.mutable_image()->set_name(name);
    for (const auto& [k, v] : labels) (*req.mutable_image()->mutable_labels())[k] = v;
    req.mutable_image()->mutable_target()->set_digest(digest);
    req.mutable_image()->mutable_target()->set_media_type(media_type);
    req.mutable_image()->mutable_target()->set_size(size);
    return Images()->Create(Context().get(), req, &resp);
  }

  std::optional<iv1::Image> GetImage(const std::string& name) {
    iv1::GetImageRequest req;
    iv1::GetImageResponse resp;
    req.set_name(name);
    if (!Images()->Get(Context().get(), req, &resp).ok()) return std::nullopt;
    return resp.image();
  }

  // Builds the shared one-layer test image; keeps its manifest for the assertions.
  std::string BuildOciTar(const std::string& name) {
    OciImage img = BuildOciImage(tmp_, name);
    manifest_ = {{"digest", img.manifest_digest}};
    manifest_bytes_ = img.manifest_bytes;
    return img.tar;
  }

  std::shared_ptr<grpc::Channel> channel_;
  nlohmann::json manifest_;
  std::string manifest_bytes_;
};

// ---- Leases -------------------------------------------------------------------------------

TEST_F(BerthImagesLeasesCliTest, LeasesCreateListRemove) {
  auto before = std::chrono::system_clock::now();
  RunResult r = Berth({"leases", "create"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // ctr's shape: "<nanoseconds>-<4 base64url characters>".
  ASSERT_TRUE(std::regex_match(r.out, std::regex("[0-9]+-[A-Za-z0-9_-]{4}\n"))) << r.out;
  const std::string generated = r.out.substr(0, r.out.size() - 1);

  r = Berth({"leases", "create", "--id", "l1", "--expires", "0", "team=infra"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "l1\n");
  r = Berth({"--format", "json", "leases", "create", "--id", "l2", "-x", "1h30m"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto created = nlohmann::json::parse(r.out);
  EXPECT_EQ(created["id"], "l2");
  ASSERT_TRUE(created["labels"].contains("containerd.io/gc.expire")) << r.out;

  // Default expiry: a day from now, as RFC 3339 UTC; --expires 1h30m likewise.
  RunResult j = Berth({"--format", "json", "leases", "ls"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  auto list = nlohmann::json::parse(j.out);
  ASSERT_EQ(list.size(), 3u) << j.out;
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& l : list) by_id[l["id"]] = l;
  ASSERT_TRUE(by_id.contains(generated));
  auto expire = ParseUtc(by_id[generated]["labels"]["containerd.io/gc.expire"]);
  ASSERT_TRUE(expire) << by_id[generated];
  EXPECT_GE(*expire, before + std::chrono::hours(24) - std::chrono::seconds(2));
  EXPECT_LE(*expire,
            std::chrono::system_clock::now() + std::chrono::hours(24) + std::chrono::seconds(2));
  auto expire2 = ParseUtc(by_id["l2"]["labels"]["containerd.io/gc.expire"]);
  ASSERT_TRUE(expire2);
  EXPECT_LE(*expire2,
            std::chrono::system_clock::now() + std::chrono::minutes(90) + std::chrono::seconds(2));
  EXPECT_GE(*expire2, before + std::chrono::minutes(90) - std::chrono::seconds(2));
  EXPECT_EQ(by_id["l1"]["labels"], nlohmann::json({{"team", "infra"}}));  // 0: no expiry

  r = Berth({"leases", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_TRUE(std::regex_match(lines[0], std::regex("ID +CREATED +AGE +LABELS"))) << lines[0];
  // Oldest first.
  EXPECT_EQ(Cells(lines[1])[0], generated);
  EXPECT_EQ(Cells(lines[2])[0], "l1");
  EXPECT_EQ(Cells(lines[3])[0], "l2");
  EXPECT_TRUE(std::regex_search(lines[2], std::regex(R"(^l1 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +)"
                                                     R"(.* team=infra$)")))
      << lines[2];
  EXPECT_EQ(Berth({"leases", "ls", "-q"}).out, generated + "\nl1\nl2\n");
  EXPECT_EQ(Berth({"leases", "ls", "-q", "labels.team==infra"}).out, "l1\n");
  EXPECT_EQ(Berth({"leases", "ls", "-q", "id==l2"}).out, "l2\n");

  // ctr sees the same leases and labels.
  std::string ctr_row = RowOf(Ctr({"leases", "ls"}).out, "l1");
  EXPECT_NE(ctr_row.find("team=infra"), std::string::npos) << ctr_row;
  EXPECT_EQ(Ctr({"leases", "ls", "-q"}).out, generated + "\nl1\nl2\n");

  r = Berth({"leases", "create", "--id", "l1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(already exists)"), std::string::npos) << r.err;
  r = Berth({"leases", "create", "--expires", "soon"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("invalid duration"), std::string::npos) << r.err;

  r = Berth({"leases", "rm", "l1", "ghost", "l2", "--sync"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "l1\nl2\n");
  EXPECT_NE(r.err.find("ghost"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_EQ(Ctr({"leases", "ls", "-q"}).out, generated + "\n");

  r = Berth({"--format", "json", "leases", "rm", generated});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({generated}));
  EXPECT_EQ(Berth({"leases", "ls", "-q"}).out, "");
}

TEST_F(BerthImagesLeasesCliTest, SeesLeasesCtrCreates) {
  ASSERT_EQ(Ctr({"leases", "create", "--id", "fromctr", "a=b"}).exit_code, 0);
  RunResult r = Berth({"leases", "ls"});
  std::string row = RowOf(r.out, "fromctr");
  EXPECT_NE(row.find("a=b,containerd.io/gc.expire="), std::string::npos) << r.out;
}

// ---- Images -------------------------------------------------------------------------------

TEST_F(BerthImagesLeasesCliTest, ImagesList) {
  ASSERT_TRUE(CreateImage("docker.io/library/busybox:latest", kDigestA, kIndex,
                          {{"env", "prod"}, {"team", "infra"}}, 1536)
                  .ok());
  ASSERT_TRUE(CreateImage("docker.io/library/alpine:3", kDigestB, kDockerManifest, {}, 528).ok());
  ASSERT_TRUE(CreateImage("odd", kDigestB, "application/x-custom").ok());

  RunResult r = Berth({"images", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_TRUE(std::regex_match(lines[0], std::regex("REF +TYPE +DIGEST +SIZE +LABELS")))
      << lines[0];
  EXPECT_TRUE(std::regex_match(
      lines[1], std::regex(std::string(R"(docker\.io/library/alpine:3 +manifest \(docker\) +)") +
                           kDigestB + R"( +528 B +-)")))
      << lines[1];
  EXPECT_TRUE(std::regex_match(
      lines[2], std::regex(std::string(R"(docker\.io/library/busybox:latest +index +)") + kDigestA +
                           R"( +1\.5 KiB +env=prod,team=infra)")))
      << lines[2];
  EXPECT_TRUE(std::regex_match(
      lines[3], std::regex(std::string(R"(odd +application/x-custom +)") + kDigestB + " .*")))
      << lines[3];

  EXPECT_EQ(Berth({"images", "ls", "-q"}).out,
            "docker.io/library/alpine:3\ndocker.io/library/busybox:latest\nodd\n");
  EXPECT_EQ(Berth({"images", "ls", "-q", "labels.env==prod"}).out,
            "docker.io/library/busybox:latest\n");
  // Separate filters are ORed; a comma ANDs within one.
  EXPECT_EQ(Berth({"image", "list", "-q", std::string("target.digest==") + kDigestB}).out,
            "docker.io/library/alpine:3\nodd\n");
  EXPECT_EQ(
      Berth({"image", "list", "-q", std::string("target.digest==") + kDigestB + ",name~=alp"}).out,
      "docker.io/library/alpine:3\n");
  EXPECT_EQ(Berth({"images", "ls", "-q", "name==odd", "labels.team"}).out,
            "docker.io/library/busybox:latest\nodd\n");

  r = Berth({"--format", "json", "images", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[1]["name"], "docker.io/library/busybox:latest");
  EXPECT_EQ(j[1]["target"]["media_type"], kIndex);
  EXPECT_EQ(j[1]["target"]["digest"], kDigestA);
  EXPECT_EQ(j[1]["target"]["size"], 1536);
  EXPECT_EQ(j[1]["labels"], nlohmann::json({{"env", "prod"}, {"team", "infra"}}));

  r = Berth({"images", "ls", "name=="});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;
}

TEST_F(BerthImagesLeasesCliTest, ImagesLabel) {
  ASSERT_TRUE(CreateImage("img", kDigestA, kIndex, {{"keep", "1"}}).ok());
  RunResult r = Berth({"images", "label", "img", "foo=bar"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(RowOf(r.out, "img").ends_with(" foo=bar,keep=1")) << r.out;
  auto img = GetImage("img");
  ASSERT_TRUE(img);
  EXPECT_EQ(img->labels().at("foo"), "bar");
  EXPECT_EQ(img->target().digest(), kDigestA);  // labels.<key> leaves the target alone

  r = Berth({"images", "label", "img", "foo="});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(RowOf(r.out, "img").ends_with(" keep=1")) << r.out;
  // ctr agrees.
  EXPECT_TRUE(RowOf(Ctr({"images", "ls"}).out, "img").find("foo") == std::string::npos);

  // No pairs: just show it.
  r = Berth({"--format", "json", "images", "label", "img"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["labels"], nlohmann::json({{"keep", "1"}}));

  r = Berth({"images", "label", "missing", "a=b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_FALSE(GetImage("missing"));
  r = Berth({"images", "label", "missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
}

TEST_F(BerthImagesLeasesCliTest, ImagesTag) {
  ASSERT_TRUE(CreateImage("src:1", kDigestA, kIndex, {{"l", "v"}}).ok());
  RunResult r = Berth({"images", "tag", "src:1", "dst:1", "dst:2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "dst:1\ndst:2\n");
  for (const char* name : {"dst:1", "dst:2"}) {
    auto img = GetImage(name);
    ASSERT_TRUE(img) << name;
    EXPECT_EQ(img->target().digest(), kDigestA);
    EXPECT_EQ(img->target().media_type(), kIndex);
    EXPECT_EQ(img->target().size(), 1234);
    EXPECT_EQ(img->labels().at("l"), "v");
  }
  EXPECT_EQ(Ctr({"images", "ls", "-q"}).out, "dst:1\ndst:2\nsrc:1\n");

  r = Berth({"images", "tag", "src:1", "dst:1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(already exists)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;

  ASSERT_TRUE(CreateImage("src:2", kDigestB, kDockerManifest).ok());
  r = Berth({"images", "tag", "--force", "src:2", "dst:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "dst:1\n");
  auto retargeted = GetImage("dst:1");
  ASSERT_TRUE(retargeted);
  EXPECT_EQ(retargeted->target().digest(), kDigestB);
  EXPECT_EQ(retargeted->target().media_type(), kDockerManifest);
  EXPECT_TRUE(retargeted->labels().empty());  // src:2's labels, which are none
  EXPECT_NE(RowOf(Ctr({"images", "ls"}).out, "dst:1").find(kDigestB), std::string::npos);

  r = Berth({"images", "tag", "nope", "dst:3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_FALSE(GetImage("dst:3"));

  r = Berth({"images", "tag", "src:1"});
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(BerthImagesLeasesCliTest, ImagesRemove) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(CreateImage(name, kDigestA, kIndex).ok());
  RunResult r = Berth({"images", "rm", "a", "ghost", "b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "a\nb\n");
  EXPECT_NE(r.err.find("ghost"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  r = Berth({"--format", "json", "images", "rm", "--sync", "c"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({"c"}));
  EXPECT_EQ(Ctr({"images", "ls", "-q"}).out, "");
  EXPECT_EQ(Berth({"images", "ls"}).out, "REF   TYPE   DIGEST   SIZE   LABELS\n");
}

TEST_F(BerthImagesLeasesCliTest, ImportedImageAndItsContent) {
  const std::string tar = BuildOciTar("example.com/berth/test:latest");
  RunResult r = Ctr({"images", "import", "--no-unpack", tar});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  r = Berth({"images", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string row = RowOf(r.out, "example.com/berth/test:latest");
  auto cells = Cells(row);
  ASSERT_EQ(cells.size(), 6u) << r.out;  // "398 B" is two cells
  EXPECT_EQ(cells[1], "manifest");
  EXPECT_EQ(cells[2], manifest_["digest"]);
  EXPECT_EQ(cells[3] + " " + cells[4], std::to_string(manifest_bytes_.size()) + " B");

  // The manifest is in the content store, byte for byte; berth lists it too.
  RunResult got = Berth({"content", "get", manifest_["digest"].get<std::string>()});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, manifest_bytes_);
  EXPECT_NE(Berth({"content", "ls", "-q"}).out.find(manifest_["digest"].get<std::string>()),
            std::string::npos);

  // Tag it, remove the original: the tag still names the same content.
  ASSERT_EQ(Berth({"images", "tag", "example.com/berth/test:latest", "mine:1"}).exit_code, 0);
  ASSERT_EQ(Berth({"images", "rm", "example.com/berth/test:latest"}).exit_code, 0);
  EXPECT_EQ(Ctr({"images", "ls", "-q"}).out, "mine:1\n");
  EXPECT_NE(RowOf(Ctr({"images", "ls"}).out, "mine:1").find(manifest_["digest"].get<std::string>()),
            std::string::npos);
}

// ---- Events -------------------------------------------------------------------------------

class BerthEventsCliTest : public BerthImagesLeasesCliTest {};

TEST_F(BerthEventsCliTest, SeesNamespaceCreate) {
  Background ev;
  ASSERT_TRUE(ev.Start({BinaryPath("berth"), "--address", socket_, "events"}, tmp_ + "/ev.out"));
  // Subscription is asynchronous: create namespaces until one shows up.
  std::string got;
  int n = 0;
  for (int i = 0; i < 50 && got.find("/namespaces/create") == std::string::npos; ++i) {
    if (i % 10 == 0) {
      ASSERT_EQ(Berth({"ns", "create", "evns" + std::to_string(n++), "k=v"}).exit_code, 0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = ev.Out();
  }
  ASSERT_NE(got.find("/namespaces/create"), std::string::npos) << ev.Err();
  // TIME NAMESPACE TOPIC EVENT, the payload decoded to JSON with proto field names.
  std::regex line_re(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z default /namespaces/create )"
                     R"(\{"name":"evns\d+","labels":\{"k":"v"\}\})");
  bool matched = false;
  for (const auto& line : Lines(got)) matched = matched || std::regex_match(line, line_re);
  EXPECT_TRUE(matched) << got;

  // Other event types decode too (one from another events .proto file).
  ASSERT_TRUE(CreateImage("ev:1", kDigestA, kIndex).ok());
  for (int i = 0; i < 50 && got.find("/images/create") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = ev.Out();
  }
  EXPECT_NE(got.find(" default /images/create {\"name\":\"ev:1\"}"), std::string::npos) << got;
  EXPECT_EQ(ev.Err(), "");
}

TEST_F(BerthEventsCliTest, JsonLinesAndFilters) {
  Background ev;
  ASSERT_TRUE(ev.Start({BinaryPath("berth"), "--address", socket_, "--format", "json", "events",
                        "topic~=/namespaces/"},
                       tmp_ + "/ev.out"));
  std::string got;
  int n = 0;
  for (int i = 0; i < 50 && got.find("/namespaces/create") == std::string::npos; ++i) {
    if (i % 10 == 0) {
      ASSERT_TRUE(CreateImage("filtered-out-" + std::to_string(n), kDigestA, kIndex).ok());
      ASSERT_EQ(Berth({"ns", "create", "jns" + std::to_string(n++)}).exit_code, 0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = ev.Out();
  }
  ASSERT_NE(got.find("/namespaces/create"), std::string::npos) << ev.Err();
  auto lines = Lines(got);
  ASSERT_FALSE(lines.empty());
  for (const auto& line : lines) {
    auto j = nlohmann::json::parse(line);  // one object per line
    EXPECT_EQ(j["topic"], "/namespaces/create") << line;
    EXPECT_EQ(j["namespace"], "default");
    EXPECT_EQ(j["type"], "containerd.events.NamespaceCreate");
    EXPECT_TRUE(j["event"]["name"].get<std::string>().starts_with("jns")) << line;
    EXPECT_TRUE(j["timestamp"].get<std::string>().ends_with("Z"));
  }
}

TEST_F(BerthEventsCliTest, EndsWithAnErrorWhenTheDaemonGoes) {
  Background ev;
  ASSERT_TRUE(ev.Start({BinaryPath("berth"), "--address", socket_, "events"}, tmp_ + "/ev.out"));
  // Make sure it subscribed before stopping the daemon.
  std::string got;
  for (int i = 0; i < 50 && got.empty(); ++i) {
    if (i % 10 == 0) {
      ASSERT_EQ(Berth({"ns", "create", "x" + std::to_string(i)}).exit_code, 0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = ev.Out();
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(StopDaemon(), 0);
  int code = ev.WaitExit(10000);
  EXPECT_NE(code, -2) << "berth events kept running after berthd stopped";
  // A clean end of stream is exit 0; a broken one is exit 1 with a berth: line.
  if (code != 0) {
    EXPECT_EQ(code, 1);
    EXPECT_TRUE(ev.Err().starts_with("berth: ")) << ev.Err();
  }
}

}  // namespace
}  // namespace berth::testing
