// Our CLI, `berth`, against a real berthd: output formats, errors and how it finds the daemon.
// ctr cross-checks that what berth did is what containerd's own client sees.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
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

// Usage names the program `berth` (not the path it was run by) and shows the argv shape.
TEST_F(BerthCliTest, UsageNamesBerthAndShowsArgv) {
  RunResult r = Berth({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("berth: command-line client")) << r.out;
  EXPECT_NE(r.out.find("Usage: berth [OPTIONS] SUBCOMMAND"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(BinaryPath("berth")), std::string::npos) << r.out;

  r = Berth({"run", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Usage: berth run [OPTIONS] IMAGE ID [COMMAND [ARG...]]"),
            std::string::npos)
      << r.out;
  r = Berth({"exec", "--help"});
  EXPECT_NE(r.out.find("Usage: berth exec [OPTIONS] ID COMMAND [ARG...]"), std::string::npos)
      << r.out;
  r = Berth({"tasks", "exec", "--help"});
  EXPECT_NE(r.out.find("Usage: berth tasks exec [OPTIONS] ID COMMAND [ARG...]"),
            std::string::npos)
      << r.out;
}

// An unknown command says which, suggests the near ones, points at --help, and exits 2.
TEST_F(BerthCliTest, UnknownCommandHintsAndExitsTwo) {
  RunResult r = Berth({"imags", "ls"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("berth: unknown command \"imags\" for \"berth\""), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("Did you mean this?\n\timages"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("See 'berth --help'."), std::string::npos) << r.err;

  r = Berth({"namespaces", "lst"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unknown command \"lst\" for \"berth namespaces\""), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("\tls"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("See 'berth namespaces --help'."), std::string::npos) << r.err;

  // Nothing close: no suggestion, still the pointer to --help.
  r = Berth({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unknown command \"frobnicate\""), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Did you mean"), std::string::npos) << r.err;
}

// Usage errors exit 2 (not CLI11's internal codes such as 105 or 106); errors 1.
TEST_F(BerthCliTest, ExitCodesAreOneForErrorsTwoForUsage) {
  RunResult r = Berth({});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(r.err.starts_with("berth: ")) << r.err;
  EXPECT_EQ(Berth({"ns", "ls", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(Berth({"--format", "yaml", "ns", "ls"}).exit_code, 2);
  EXPECT_EQ(Berth({"run"}).exit_code, 2);  // IMAGE and ID missing
  r = Berth({"ns", "rm"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("See 'berth namespaces rm --help'."), std::string::npos) << r.err;
  // The daemon said no: 1.
  EXPECT_EQ(Berth({"ns", "rm", "ghost"}).exit_code, 1);
  EXPECT_EQ(Berth({"ns", "ls"}).exit_code, 0);
}

// `berth plugins ls` is `ctr plugins ls`: the same rows in the same order.
TEST_F(BerthCliTest, PluginsListMatchesCtr) {
  RunResult r = Berth({"plugins", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RunResult c = Ctr({"plugins", "ls"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  auto ours = Lines(r.out), theirs = Lines(c.out);
  ASSERT_EQ(ours.size(), theirs.size()) << r.out << "\n" << c.out;
  auto words = [](const std::string& line) {
    std::vector<std::string> out;
    std::istringstream in(line);
    for (std::string w; in >> w;) out.push_back(w);
    return out;
  };
  EXPECT_EQ(words(ours[0]), (std::vector<std::string>{"TYPE", "ID", "PLATFORMS", "STATUS"}));
  for (size_t i = 1; i < ours.size(); ++i) EXPECT_EQ(words(ours[i]), words(theirs[i]));
  EXPECT_NE(r.out.find("io.containerd.snapshotter.v1"), std::string::npos);

  // Filters, as ctr takes them; -q the IDs.
  r = Berth({"plugins", "ls", "-q", "type==io.containerd.snapshotter.v1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "native\noverlayfs\n");

  r = Berth({"--format", "json", "plugins", "ls", "id==overlayfs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc.size(), 1u) << r.out;
  EXPECT_EQ(doc[0]["type"], "io.containerd.snapshotter.v1");
  EXPECT_EQ(doc[0]["status"], "ok");
  EXPECT_EQ(doc[0]["exports"]["root"], root_ + "/snapshots/overlayfs");
}

// `berth info`: the daemon's version, its root and state (from the plugins' exports), runtimes,
// and every export of the snapshotters and the content store.
TEST_F(BerthCliTest, InfoShowsDaemonDirsRuntimesAndStores) {
  RunResult r = Berth({"--format", "json", "info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto doc = nlohmann::json::parse(r.out);
  EXPECT_TRUE(doc["server"]["version"].get<std::string>().starts_with("1.6.20"));
  EXPECT_FALSE(doc["server"]["uuid"].get<std::string>().empty());
  EXPECT_EQ(doc["root"], root_);
  EXPECT_EQ(doc["state"], state_);
  auto runtimes = doc["runtimes"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(runtimes.begin(), runtimes.end(), "io.containerd.runc.v2"),
            runtimes.end())
      << r.out;
  std::map<std::string, nlohmann::json> snapshotters;
  for (const auto& s : doc["snapshotters"]) snapshotters[s["id"]] = s["exports"];
  ASSERT_TRUE(snapshotters.contains("overlayfs")) << r.out;
  ASSERT_TRUE(snapshotters.contains("native")) << r.out;
  EXPECT_EQ(snapshotters["native"]["root"], root_ + "/snapshots/native");
  ASSERT_EQ(doc["content"].size(), 1u) << r.out;
  EXPECT_EQ(doc["content"][0]["exports"]["root"], root_ + "/content");

  // The table says the same; every export of every store is printed.
  r = Berth({"info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("  Root:      " + root_ + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  State:     " + state_ + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Runtimes:\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Snapshotters:\n  native\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    removal_pending: 0\n    root: " + root_ + "/snapshots/native\n"),
            std::string::npos)
      << r.out;
  for (const auto& [id, exports] : snapshotters) {
    for (const auto& [k, v] : exports.items()) {
      EXPECT_NE(r.out.find("    " + k + ": " + v.get<std::string>() + "\n"), std::string::npos)
          << id << " " << k << "\n" << r.out;
    }
  }
  EXPECT_NE(r.out.find("Content:\n  content\n    root: " + root_ + "/content\n"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace berth::testing
