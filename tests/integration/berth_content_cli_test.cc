// `berth content` against a real berthd: ingest (with resume), ls, get, label, rm, active and
// abort, cross-checked with the real ctr in both directions (what berth stores ctr reads back
// byte for byte, and the other way round).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "github.com/containerd/containerd/api/services/content/v1/content.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace capi = containerd::services::content::v1;

constexpr char kEmptyDigest[] =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// The table row whose first cell is `key`, or "".
std::string RowOf(const std::string& table, const std::string& key) {
  for (const auto& line : Lines(table)) {
    if (line == key || line.starts_with(key + " ") || line.starts_with(key + "\t")) return line;
  }
  return "";
}

class BerthContentCliTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
  }

  std::string WriteFile(const std::string& name, const std::string& data) {
    std::string path = tmp_ + "/" + name;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
    return path;
  }

  // "sha256:<hex>" via coreutils, so the expected digests do not come from our own code.
  std::string Sha256(const std::string& data) {
    std::string path = WriteFile("sha-input", data);
    RunResult r = berth::testing::Run({"sha256sum", "--", path}, "", 60);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.size() >= 64 ? "sha256:" + r.out.substr(0, 64) : "";
  }

  // berth with `stdin_data` piped in.
  RunResult BerthIn(const std::vector<std::string>& args, const std::string& stdin_data) {
    std::vector<std::string> argv = {BinaryPath("berth"), "--address", socket_, "--namespace",
                                     "default"};
    argv.insert(argv.end(), args.begin(), args.end());
    return berth::testing::Run(argv, stdin_data, 60);
  }

  // berth with stdin redirected from a regular file (seekable, unlike a pipe).
  RunResult BerthFromFile(const std::string& args, const std::string& path) {
    return berth::testing::Run(
        {"sh", "-c", BinaryPath("berth") + " --address " + socket_ + " " + args + " < " + path}, "",
        60);
  }

  // Leaves an unfinished ingest behind: STAT, one WRITE of `prefix`, then the stream ends
  // without a COMMIT, as a client that died mid-transfer would.
  void PartialIngest(const std::string& ref, const std::string& prefix, int64_t total) {
    auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
    auto stub = capi::Content::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "default");
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stream = stub->Write(&ctx);
    capi::WriteContentRequest req;
    capi::WriteContentResponse resp;
    req.set_action(capi::STAT);
    req.set_ref(ref);
    req.set_total(total);
    ASSERT_TRUE(stream->Write(req));
    ASSERT_TRUE(stream->Read(&resp));
    req.set_action(capi::WRITE);
    req.set_offset(0);
    req.set_data(prefix);
    ASSERT_TRUE(stream->Write(req));
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_EQ(resp.offset(), static_cast<int64_t>(prefix.size()));
    stream->WritesDone();
    grpc::Status s = stream->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
};

TEST_F(BerthContentCliTest, IngestListGetRoundTrip) {
  const std::string data = RandomBytes(3 << 20, 1);  // three 1 MiB WRITEs
  const std::string digest = Sha256(data);
  RunResult r = BerthIn({"content", "ingest", "blob-1", "--label", "team=infra", "--label",
                         "containerd.io/gc.root=yes"},
                        data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, digest + "\n");
  EXPECT_EQ(r.err, "");  // no progress bar when stderr is no terminal

  // ctr reads back exactly what berth wrote.
  RunResult got = Ctr({"content", "get", digest});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(got.out == data) << "ctr content get returned " << got.out.size() << " bytes";
  got = Berth({"content", "get", digest});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(got.out == data) << "berth content get returned " << got.out.size() << " bytes";

  r = Berth({"content", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(std::regex_match(lines[0], std::regex(R"(DIGEST +SIZE +AGE +LABELS)"))) << r.out;
  EXPECT_TRUE(std::regex_match(
      lines[1], std::regex(digest + R"( +3\.0 MiB +(Less than a second|\d+ seconds?) +)"
                                    R"(containerd\.io/gc\.root=yes,team=infra)")))
      << lines[1];
  EXPECT_EQ(Berth({"content", "ls", "-q"}).out, digest + "\n");
  EXPECT_NE(RowOf(Ctr({"content", "ls"}).out, digest).find("team=infra"), std::string::npos);

  r = Berth({"--format", "json", "content", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["digest"], digest);
  EXPECT_EQ(j[0]["size"], 3 << 20);
  EXPECT_EQ(j[0]["labels"]["team"], "infra");
  EXPECT_TRUE(j[0]["created_at"].get<std::string>().ends_with("Z"));

  // Filters go to the server.
  EXPECT_EQ(Berth({"content", "ls", "-q", "labels.team==infra"}).out, digest + "\n");
  EXPECT_EQ(Berth({"content", "ls", "-q", "labels.team==other"}).out, "");

  r = Berth({"--format", "json", "content", "ls", "-q"});
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({digest}));
}

TEST_F(BerthContentCliTest, CtrIngestBerthGet) {
  const std::string data = RandomBytes(1500000, 2);
  const std::string digest = Sha256(data);
  RunResult r = berth::testing::Run(
      {"/usr/bin/ctr", "--address", socket_, "content", "ingest", "from-ctr"}, data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RunResult got = Berth({"content", "get", digest});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(got.out == data) << "berth content get returned " << got.out.size() << " bytes";
  EXPECT_TRUE(
      std::regex_search(RowOf(Berth({"content", "ls"}).out, digest), std::regex(R"( 1\.4 MiB )")));
}

TEST_F(BerthContentCliTest, EmptyAndExistingBlobs) {
  RunResult r = BerthIn({"content", "ingest", "empty"}, "");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kEmptyDigest) + "\n");
  EXPECT_EQ(Ctr({"content", "get", kEmptyDigest}).out, "");

  // Storing what is there already succeeds (as ctr does), with or without the digest given.
  const std::string data = "hello berth\n";
  const std::string digest = Sha256(data);
  ASSERT_EQ(BerthIn({"content", "ingest", "h1"}, data).out, digest + "\n");
  r = BerthIn({"content", "ingest", "h2"}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, digest + "\n");
  r = BerthIn({"content", "ingest", "h3", "--expected-digest", digest}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, digest + "\n");
  EXPECT_EQ(Berth({"content", "active"}).out, "REF   OFFSET/TOTAL   STARTED   UPDATED\n");
}

TEST_F(BerthContentCliTest, CommitChecks) {
  const std::string data = RandomBytes(100000, 3);
  const std::string digest = Sha256(data);
  const std::string wrong =
      "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  RunResult r = BerthIn({"content", "ingest", "bad-digest", "--expected-digest", wrong}, data);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("berth: ")) << r.err;
  EXPECT_TRUE(
      std::regex_search(r.err, std::regex(R"(\((failed precondition|invalid argument)\)\n$)")))
      << r.err;
  EXPECT_EQ(r.out, "");

  r = BerthIn({"content", "ingest", "bad-size", "--expected-size", "99999"}, data);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("berth: ")) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Berth({"content", "ls", "-q"}).out, "");

  r = BerthIn({"--format", "json", "content", "ingest", "good", "--expected-size", "100000",
               "--expected-digest", digest},
              data);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["digest"], digest);
  EXPECT_EQ(j["ref"], "good");
  EXPECT_EQ(j["size"], 100000);

  r = BerthIn({"content", "ingest", "labelled", "--label", "novalue"}, data);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;
}

TEST_F(BerthContentCliTest, LabelSetsClearsAndShows) {
  const std::string data = "label me";
  const std::string digest = Sha256(data);
  ASSERT_EQ(BerthIn({"content", "ingest", "l"}, data).exit_code, 0);

  RunResult r = Berth({"content", "label", digest, "a=1", "b=2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("DIGEST ")) << r.out;
  EXPECT_TRUE(RowOf(r.out, digest).ends_with(" a=1,b=2")) << r.out;
  // ctr prints labels in map order; compare as a set.
  std::string ctr_row = RowOf(Ctr({"content", "ls"}).out, digest);
  EXPECT_NE(ctr_row.find("a=1"), std::string::npos) << ctr_row;
  EXPECT_NE(ctr_row.find("b=2"), std::string::npos) << ctr_row;

  r = Berth({"content", "label", digest, "a=", "c=3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(RowOf(r.out, digest).ends_with(" b=2,c=3")) << r.out;
  r = Berth({"--format", "json", "content", "label", digest});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["labels"], nlohmann::json({{"b", "2"}, {"c", "3"}}));

  // Labels set by ctr show up in berth.
  ASSERT_EQ(Ctr({"content", "label", digest, "fromctr=yes"}).exit_code, 0);
  EXPECT_TRUE(RowOf(Berth({"content", "ls"}).out, digest).ends_with(" b=2,c=3,fromctr=yes"));

  const std::string ghost =
      "sha256:1111111111111111111111111111111111111111111111111111111111111111";
  r = Berth({"content", "label", ghost, "a=b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  r = Berth({"content", "label", "not-a-digest", "a=b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;
}

TEST_F(BerthContentCliTest, RemoveReportsEachAndGoesOn) {
  const std::string d1 = Sha256("one");
  const std::string d2 = Sha256("two");
  ASSERT_EQ(BerthIn({"content", "ingest", "r1"}, "one").out, d1 + "\n");
  ASSERT_EQ(
      berth::testing::Run({"/usr/bin/ctr", "--address", socket_, "content", "ingest", "r2"}, "two")
          .exit_code,
      0);
  const std::string ghost =
      "sha256:2222222222222222222222222222222222222222222222222222222222222222";
  // Removing d1 triggers GC, which would collect the unreferenced d2 before its turn.
  ASSERT_EQ(Ctr({"content", "label", d2, "containerd.io/gc.root=1"}).exit_code, 0);
  RunResult r = Berth({"content", "rm", d1, ghost, d2});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, d1 + "\n" + d2 + "\n");
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_EQ(Ctr({"content", "ls", "-q"}).out, "");
  RunResult get = Berth({"content", "get", d1});
  EXPECT_EQ(get.exit_code, 1);
  EXPECT_EQ(get.out, "");
  EXPECT_NE(get.err.find("(not found)"), std::string::npos) << get.err;
}

TEST_F(BerthContentCliTest, ActiveShowsUnfinishedIngests) {
  const std::string data = RandomBytes((1 << 20) + 500000, 4);
  ASSERT_NO_FATAL_FAILURE(PartialIngest("half", data.substr(0, 1 << 20), data.size()));
  ASSERT_NO_FATAL_FAILURE(PartialIngest("sized-unknown", data.substr(0, 1000), 0));

  RunResult r = Berth({"content", "active"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_TRUE(std::regex_match(lines[0], std::regex(R"(REF +OFFSET/TOTAL +STARTED +UPDATED)")));
  EXPECT_TRUE(std::regex_match(lines[1], std::regex(R"(half +1\.0 MiB/1\.5 MiB +.* ago +.* ago)")))
      << lines[1];
  EXPECT_TRUE(std::regex_match(lines[2], std::regex(R"(sized-unknown +1000 B/\? +.*)")))
      << lines[2];
  // ctr sees the same ingests.
  EXPECT_NE(RowOf(Ctr({"content", "active"}).out, "half"), "");

  r = Berth({"--format", "json", "content", "active", "ref==half"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u) << r.out;
  EXPECT_EQ(j[0]["ref"], "half");
  EXPECT_EQ(j[0]["offset"], 1 << 20);
  EXPECT_EQ(j[0]["total"], static_cast<int64_t>(data.size()));
}

TEST_F(BerthContentCliTest, ResumeSkipsASeekableStdinAndRestartsAPipe) {
  // The server holds 1 MiB of X. The new input is Y (1 MiB) + Z. Resuming keeps X and sends
  // only Z; restarting replaces X with Y. The digest tells which one happened.
  const std::string x = RandomBytes(1 << 20, 5);
  const std::string y = RandomBytes(1 << 20, 6);
  const std::string z = RandomBytes(300000, 7);
  const std::string resumed = Sha256(x + z);
  const std::string restarted = Sha256(y + z);
  const std::string file = WriteFile("yz", y + z);

  ASSERT_NO_FATAL_FAILURE(PartialIngest("from-file", x, 0));
  RunResult r = BerthFromFile("content ingest from-file", file);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, resumed + "\n");

  ASSERT_NO_FATAL_FAILURE(PartialIngest("from-pipe", x, 0));
  r = BerthIn({"content", "ingest", "from-pipe"}, y + z);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, restarted + "\n");

  // A pipe shorter than what the server holds still restarts cleanly (truncating to it).
  ASSERT_NO_FATAL_FAILURE(PartialIngest("short-pipe", x, 0));
  r = BerthIn({"content", "ingest", "short-pipe"}, "tiny");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Sha256("tiny") + "\n");

  // A file shorter than the server's offset cannot be a continuation: start over.
  const std::string small = WriteFile("small", "small file");
  ASSERT_NO_FATAL_FAILURE(PartialIngest("short-file", x, 0));
  r = BerthFromFile("content ingest short-file", small);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Sha256("small file") + "\n");

  EXPECT_EQ(Lines(Berth({"content", "active"}).out).size(), 1u);  // header only
  RunResult got = Ctr({"content", "get", resumed});
  EXPECT_TRUE(got.out == x + z);
}

TEST_F(BerthContentCliTest, AbortDropsAnIngest) {
  ASSERT_NO_FATAL_FAILURE(PartialIngest("doomed", RandomBytes(5000, 8), 10000));
  ASSERT_NO_FATAL_FAILURE(PartialIngest("kept", RandomBytes(5000, 9), 10000));
  RunResult r = Berth({"content", "abort", "doomed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "doomed\n");
  EXPECT_EQ(RowOf(Berth({"content", "active"}).out, "doomed"), "");
  EXPECT_EQ(RowOf(Ctr({"content", "active"}).out, "doomed"), "");
  EXPECT_NE(RowOf(Ctr({"content", "active"}).out, "kept"), "");

  r = Berth({"content", "abort", "ghost"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;

  r = Berth({"--format", "json", "content", "abort", "kept"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({"kept"}));
}

TEST_F(BerthContentCliTest, ProgressBarOnATerminal) {
  if (berth::testing::Run({"sh", "-c", "command -v script"}, "", 10).exit_code != 0) {
    GTEST_SKIP() << "needs script(1) from util-linux for a pseudo-terminal";
  }
  const std::string data = RandomBytes(3 << 20, 10);
  const std::string file = WriteFile("tty-input", data);
  // script gives berth a terminal for stdout and stderr; stdin stays the regular file.
  RunResult r = berth::testing::Run(
      {"script", "-qec",
       BinaryPath("berth") + " --address " + socket_ + " content ingest tty-ref < " + file,
       "/dev/null"},
      "", 60);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tty-ref ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("100%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3.0 MiB / 3.0 MiB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(Sha256(data)), std::string::npos) << r.out;
}

TEST_F(BerthContentCliTest, UsageErrors) {
  RunResult r = Berth({"content", "get"});
  EXPECT_NE(r.exit_code, 0);
  r = Berth({"content", "get", "sha256:nothex"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;
  r = Berth({"content", "ingest"});
  EXPECT_NE(r.exit_code, 0);
  r = Berth({"content", "ingest", "x", "--expected-size", "-5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace berth::testing
