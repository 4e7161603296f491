// Our CLI, `berth`, against a real berthd: output formats, errors and how it finds the daemon.
// ctr cross-checks that what berth did is what containerd's own client sees.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "harness.h"

namespace berth::testing {
namespace {

class BerthCliTest : public DaemonTest {};

// berth with no --address/--namespace flags, so the environment decides.
RunResult RunBerth(std::vector<std::string> args,
                   const std::map<std::string, std::string>& env = {}) {
  args.insert(args.begin(), BinaryPath("berth"));
  return berth::testing::Run(args, "", 30, env);
}

// The row of a `ns ls`-style table (ctr's or ours) whose first column is `name`, or "".
std::string RowOf(const std::string& table, const std::string& name) {
  for (const auto& line : Lines(table)) {
    if (line == name || line.starts_with(name + " ")) return line;
  }
  return "";
}

TEST_F(BerthCliTest, VersionNamesClientAndServer) {
  RunResult r = Berth({"version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Client:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Server:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1.6.20"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("UUID:"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");

  RunResult j = Berth({"--format", "json", "version"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_TRUE(doc["server"]["version"].get<std::string>().starts_with("1.6.20"));
  EXPECT_FALSE(doc["server"]["uuid"].get<std::string>().empty());
  EXPECT_FALSE(doc["client"]["version"].get<std::string>().empty());
  // The UUID is the daemon's, so it matches across calls.
  EXPECT_NE(Berth({"version"}).out.find(doc["server"]["uuid"].get<std::string>()),
            std::string::npos);
}

TEST_F(BerthCliTest, NamespaceRoundTrip) {
  RunResult r = Berth({"ns", "create", "foo", "env=prod", "team=infra"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(Berth({"namespaces", "create", "bar"}).exit_code, 0);

  r = Berth({"ns", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_TRUE(lines[0].starts_with("NAME ")) << r.out;
  // Aligned: LABELS starts at the same column in every row.
  size_t col = lines[0].find("LABELS");
  ASSERT_NE(col, std::string::npos);
  EXPECT_EQ(lines[1], "bar");  // no labels: no trailing padding
  EXPECT_EQ(lines[2].substr(0, col), std::string("foo").append(col - 3, ' '));
  EXPECT_EQ(lines[2].substr(col), "env=prod,team=infra");
  EXPECT_NE(RowOf(Ctr({"ns", "ls"}).out, "foo").find("env=prod,team=infra"), std::string::npos);

  EXPECT_EQ(Berth({"ns", "list", "-q"}).out, "bar\nfoo\n");

  // label sets, `k=` clears, and the result is printed.
  r = Berth({"ns", "label", "foo", "owner=me", "env="});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(RowOf(r.out, "foo").find("owner=me,team=infra"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("env="), std::string::npos) << r.out;
  std::string ctr_row = RowOf(Ctr({"ns", "ls"}).out, "foo");
  EXPECT_NE(ctr_row.find("owner=me,team=infra"), std::string::npos) << ctr_row;
  EXPECT_EQ(ctr_row.find("env"), std::string::npos) << ctr_row;
  // No pairs: just show them.
  r = Berth({"ns", "label", "foo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(RowOf(r.out, "foo").find("owner=me,team=infra"), std::string::npos) << r.out;

  r = Berth({"ns", "rm", "foo", "bar"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "foo\nbar\n");
  EXPECT_EQ(Berth({"ns", "ls", "-q"}).out, "");
  EXPECT_EQ(RowOf(Ctr({"ns", "ls"}).out, "foo"), "");
}

TEST_F(BerthCliTest, SeesWhatCtrCreates) {
  ASSERT_EQ(Ctr({"ns", "create", "fromctr", "a=1"}).exit_code, 0);
  RunResult r = Berth({"ns", "ls"});
  EXPECT_NE(RowOf(r.out, "fromctr").find("a=1"), std::string::npos) << r.out;
}

TEST_F(BerthCliTest, JsonFormat) {
  RunResult r = Berth({"--format", "json", "ns", "create", "foo", "k=v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto created = nlohmann::json::parse(r.out);
  EXPECT_EQ(created["name"], "foo");
  EXPECT_EQ(created["labels"]["k"], "v");
  ASSERT_EQ(Berth({"ns", "create", "bare"}).exit_code, 0);

  // Global flags may also follow the subcommand.
  r = Berth({"ns", "ls", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = nlohmann::json::parse(r.out);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u) << r.out;
  EXPECT_EQ(list[0]["name"], "bare");
  EXPECT_TRUE(list[0]["labels"].is_object());
  EXPECT_TRUE(list[0]["labels"].empty());
  EXPECT_EQ(list[1]["name"], "foo");
  EXPECT_EQ(list[1]["labels"], nlohmann::json({{"k", "v"}}));

  EXPECT_EQ(nlohmann::json::parse(Berth({"--format", "json", "ns", "ls", "-q"}).out),
            nlohmann::json({"bare", "foo"}));

  r = Berth({"--format", "json", "ns", "label", "foo", "x=y"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["labels"], nlohmann::json({{"k", "v"}, {"x", "y"}}));

  r = Berth({"--format", "json", "ns", "rm", "foo", "bare"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({"foo", "bare"}));

  r = Berth({"--format", "yaml", "ns", "ls"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--format"), std::string::npos) << r.err;
}

TEST_F(BerthCliTest, InvalidNameIsInvalidArgument) {
  RunResult r = Berth({"ns", "create", "Not Valid!"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.starts_with("berth: ")) << r.err;
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");

  r = Berth({"ns", "create", "ok", "novalue"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("invalid argument"), std::string::npos) << r.err;
  EXPECT_EQ(Berth({"ns", "ls", "-q"}).out, "");  // nothing half-created
}

TEST_F(BerthCliTest, DuplicateCreateIsAlreadyExists) {
  ASSERT_EQ(Berth({"ns", "create", "dup"}).exit_code, 0);
  RunResult r = Berth({"ns", "create", "dup"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(already exists)"), std::string::npos) << r.err;
}

TEST_F(BerthCliTest, RemoveUnknownIsNotFoundButGoesOn) {
  ASSERT_EQ(Berth({"ns", "create", "real"}).exit_code, 0);
  RunResult r = Berth({"ns", "rm", "ghost", "real"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ghost"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "real\n");  // the later name was still removed
  EXPECT_EQ(RowOf(Ctr({"ns", "ls"}).out, "real"), "");
}

TEST_F(BerthCliTest, LabelUnknownIsNotFoundAndCreatesNothing) {
  RunResult r = Berth({"ns", "label", "typo", "a=b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  EXPECT_EQ(RowOf(Ctr({"ns", "ls"}).out, "typo"), "");
}

TEST_F(BerthCliTest, AddressFromEnvironment) {
  ASSERT_EQ(Berth({"ns", "create", "envns"}).exit_code, 0);
  RunResult r = RunBerth({"ns", "ls", "-q"}, {{"BERTH_ADDRESS", socket_}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "envns\n");
  // "unix://" addresses, as containerd writes them, work too.
  r = RunBerth({"ns", "ls", "-q"}, {{"BERTH_ADDRESS", "unix://" + socket_}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "envns\n");
  // A flag beats the environment.
  r = RunBerth({"--address", socket_, "ns", "ls", "-q"},
               {{"BERTH_ADDRESS", tmp_ + "/elsewhere.sock"}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BerthCliTest, UnreachableSocketSaysSo) {
  const std::string missing = tmp_ + "/missing.sock";
  auto start = std::chrono::steady_clock::now();
  RunResult r = RunBerth({"--address", missing, "ns", "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect to berthd at " + missing), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is it running?"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  // A missing socket is known at once; no need to sit out the connect timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));

  // Same through the environment, and `version` still prints the client half.
  r = RunBerth({"version"}, {{"BERTH_ADDRESS", missing}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("Client:"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("cannot connect to berthd at " + missing), std::string::npos) << r.err;

  // The daemon crashed and left its socket file behind: refused, at once.
  KillDaemon();
  r = Berth({"ns", "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect to berthd at " + socket_), std::string::npos) << r.err;
}

TEST_F(BerthCliTest, SilentSocketTimesOut) {
  // Something listens but never speaks gRPC: --timeout bounds the wait.
  const std::string path = tmp_ + "/silent.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  auto start = std::chrono::steady_clock::now();
  RunResult r = RunBerth({"--address", path, "--timeout", "500ms", "ns", "ls"});
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect to berthd at " + path), std::string::npos) << r.err;
  EXPECT_LT(took, std::chrono::seconds(5));

  r = Berth({"--timeout", "soon", "ns", "ls"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("invalid duration"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace berth::testing
