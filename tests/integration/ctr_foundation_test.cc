// The foundation services (Version, Introspection, Namespaces, Events) driven by the real ctr
// 1.6.20. Expected outputs were taken from a real containerd 1.6.20 given the same commands.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

extern char** environ;

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A child whose stdout+stderr are read line by line while it runs (`ctr events`). The
// destructor kills and reaps it, so a failing assertion never leaves it behind.
class Background {
 public:
  explicit Background(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~Background() {
    Kill();
    if (fd_ >= 0) ::close(fd_);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  bool started() const { return pid_ > 0 && fd_ >= 0; }

  // Next complete line (without '\n'), or nullopt after `timeout` / at EOF.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      if (left <= 0 || eof_) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) {
        eof_ = true;
      } else {
        buf_.append(chunk, static_cast<size_t>(n));
      }
    }
  }

  // Everything not yet returned by ReadLine (for failure messages).
  const std::string& pending() const { return buf_; }

  // SIGKILL and reap; returns the wait status decoded like the harness (128+sig).
  int Kill() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  bool eof_ = false;
  std::string buf_;
};

std::vector<std::string> Fields(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

// "Server:" block of `ctr version`: {version, uuid}.
std::pair<std::string, std::string> ServerVersionAndUuid(const std::string& out) {
  std::string version, uuid;
  bool server = false;
  for (const auto& line : Lines(out)) {
    if (line == "Server:") server = true;
    if (!server) continue;
    auto f = Fields(line);
    if (f.size() == 2 && f[0] == "Version:") version = f[1];
    if (f.size() == 2 && f[0] == "UUID:") uuid = f[1];
  }
  return {version, uuid};
}

class CtrFoundationTest : public DaemonTest {
 protected:
  // `ctr ns ls` stdout.
  std::string NsList() {
    RunResult r = Ctr({"namespaces", "ls"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  std::string CtrPath() const { return "/usr/bin/ctr"; }
};

TEST_F(CtrFoundationTest, VersionShowsBerthServerAndUuidStableAcrossRestart) {
  RunResult r = Ctr({"version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Client block first (ctr's own), then the server's answer.
  EXPECT_THAT(r.out, HasSubstr("Client:\n  Version:"));
  auto [version, uuid] = ServerVersionAndUuid(r.out);
  EXPECT_TRUE(version.starts_with("1.6.20+berth")) << r.out;
  static const std::regex kUuid(
      "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  EXPECT_TRUE(std::regex_match(uuid, kUuid)) << "uuid " << uuid << " in:\n" << r.out;
  // The server version differs from ctr's, and ctr says so on stderr (as with any mismatch).
  EXPECT_THAT(r.err, HasSubstr("WARNING: version mismatch"));

  ASSERT_EQ(StopDaemon(), 0);
  ASSERT_TRUE(StartDaemon());
  RunResult again = Ctr({"version"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(ServerVersionAndUuid(again.out).second, uuid) << "UUID must be stable per root";
}

TEST_F(CtrFoundationTest, NamespaceCreateListLabelRemove) {
  EXPECT_EQ(NsList(), "NAME LABELS \n");

  RunResult c = Ctr({"namespaces", "create", "n1", "a=b"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "");
  EXPECT_EQ(c.err, "");
  // ctr's tabwriter table, byte for byte as with containerd.
  EXPECT_EQ(NsList(), "NAME LABELS \nn1   a=b    \n");

  RunResult l = Ctr({"namespaces", "label", "n1", "c=d", "a="});  // "a=" clears a
  ASSERT_EQ(l.exit_code, 0) << l.err;
  EXPECT_EQ(l.out, "");
  EXPECT_EQ(NsList(), "NAME LABELS \nn1   c=d    \n");

  ASSERT_EQ(Ctr({"ns", "c", "zz.second", "k2=v2", "k1=v1"}).exit_code, 0);
  // Names sorted bytewise; labels sorted and comma-joined by ctr.
  EXPECT_EQ(NsList(),
            "NAME      LABELS      \n"
            "n1        c=d         \n"
            "zz.second k1=v1,k2=v2 \n");
  RunResult q = Ctr({"ns", "ls", "-q"});
  EXPECT_EQ(q.out, "n1\nzz.second\n");

  RunResult rm = Ctr({"namespaces", "rm", "n1", "zz.second"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(rm.out, "n1\nzz.second\n");
  EXPECT_EQ(rm.err, "");
  EXPECT_EQ(NsList(), "NAME LABELS \n");
}

TEST_F(CtrFoundationTest, NamespaceCreateDuplicateIsAlreadyExists) {
  ASSERT_EQ(Ctr({"ns", "create", "n1", "a=b"}).exit_code, 0);
  RunResult dup = Ctr({"ns", "create", "n1", "x=y"});
  EXPECT_EQ(dup.exit_code, 1);
  EXPECT_EQ(dup.err, "ctr: namespace \"n1\": already exists\n");
  // The original is untouched.
  EXPECT_EQ(NsList(), "NAME LABELS \nn1   a=b    \n");
}

TEST_F(CtrFoundationTest, NamespaceInvalidNamesAreInvalidArgument) {
  const std::string long_name(77, 'a');
  const std::string pattern = " must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$";
  struct Case {
    std::string name, err;
  };
  const Case cases[] = {
      {"bad name", "ctr: identifier \"bad name\"" + pattern + ": invalid argument\n"},
      {"-x", "ctr: identifier \"-x\"" + pattern + ": invalid argument\n"},
      {"a..b", "ctr: identifier \"a..b\"" + pattern + ": invalid argument\n"},
      {"x-", "ctr: identifier \"x-\"" + pattern + ": invalid argument\n"},
      {long_name, "ctr: identifier \"" + long_name +
                      "\" greater than maximum length (76 characters): invalid argument\n"},
  };
  for (const Case& c : cases) {
    // "--" so urfave/cli does not take "-x" for a flag.
    RunResult r = Ctr({"ns", "create", "--", c.name});
    EXPECT_EQ(r.exit_code, 1) << c.name;
    EXPECT_EQ(r.err, c.err) << c.name;
  }
  // 76 characters is the limit, not one past it.
  EXPECT_EQ(Ctr({"ns", "create", std::string(76, 'a')}).exit_code, 0);
  EXPECT_EQ(NsList(), "NAME" + std::string(73, ' ') + "LABELS \n" + std::string(76, 'a') + " " +
                          std::string(7, ' ') + "\n");
}

TEST_F(CtrFoundationTest, NamespaceRemoveUnknownSucceedsLikeContainerd) {
  // The service answers NotFound; ctr 1.6.20 ignores NotFound and still prints the name.
  RunResult r = Ctr({"ns", "rm", "unknown"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "unknown\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(NsList(), "NAME LABELS \n");
}

TEST_F(CtrFoundationTest, NamespaceLabelOnUnknownNamespaceCreatesIt) {
  // Update is an upsert in containerd (SetLabel creates the bucket), so `ns label` on a new
  // name makes the namespace exist.
  RunResult r = Ctr({"ns", "label", "fresh", "k=v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(NsList(), "NAME  LABELS \nfresh k=v    \n");
}

// Parses `ctr plugins ls` into rows of {type, id, platforms, status}.
std::vector<std::vector<std::string>> PluginRows(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  auto lines = Lines(out);
  for (size_t i = 1; i < lines.size(); ++i) rows.push_back(Fields(lines[i]));
  return rows;
}

TEST_F(CtrFoundationTest, PluginsListShowsProvidedPluginsInContainerdOrder) {
  RunResult r = Ctr({"plugins", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(Fields(Lines(r.out)[0]),
            (std::vector<std::string>{"TYPE", "ID", "PLATFORMS", "STATUS"}));
  std::vector<std::string> grpc_ids;
  for (const auto& row : PluginRows(r.out)) {
    ASSERT_EQ(row.size(), 4u) << r.out;
    EXPECT_EQ(row[3], "ok") << r.out;
    if (row[0] == "io.containerd.grpc.v1") grpc_ids.push_back(row[1]);
  }
  for (const char* id : {"introspection", "version", "namespaces", "events", "healthcheck"}) {
    EXPECT_NE(std::find(grpc_ids.begin(), grpc_ids.end(), id), grpc_ids.end())
        << "missing io.containerd.grpc.v1 " << id << " in\n"
        << r.out;
  }
  // Relative order as containerd 1.6.20 lists its grpc plugins.
  const std::vector<std::string> containerd_order = {
      "introspection", "containers", "content",   "diff",  "events",  "healthcheck", "images",
      "leases",        "namespaces", "snapshots", "tasks", "version", "cri"};
  std::vector<size_t> positions;
  for (const auto& id : grpc_ids) {
    auto it = std::find(containerd_order.begin(), containerd_order.end(), id);
    if (it != containerd_order.end()) positions.push_back(it - containerd_order.begin());
  }
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end())) << r.out;
}

TEST_F(CtrFoundationTest, PluginsListFilters) {
  // One filter string: every row has that type.
  RunResult t = Ctr({"plugins", "ls", "type==io.containerd.grpc.v1"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  auto rows = PluginRows(t.out);
  EXPECT_GE(rows.size(), 5u) << t.out;
  for (const auto& row : rows) EXPECT_EQ(row[0], "io.containerd.grpc.v1") << t.out;

  // Selectors within a string are AND-ed.
  RunResult q = Ctr({"plugins", "ls", "-q", "type==io.containerd.grpc.v1,id==namespaces"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out, "namespaces\n");

  // Several strings are OR-ed; the output keeps the server's order.
  RunResult o = Ctr({"plugins", "ls", "id==version", "id==events"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out,
            "TYPE                     ID         PLATFORMS    STATUS    \n"
            "io.containerd.grpc.v1    events     -            ok        \n"
            "io.containerd.grpc.v1    version    -            ok        \n");

  // Regex match, unanchored.
  RunResult re = Ctr({"plugins", "ls", "-q", "type==io.containerd.grpc.v1,id~=^name"});
  EXPECT_EQ(re.out, "namespaces\n");

  // Fields the plugin adaptor does not answer, and ids nobody has: an empty table.
  for (const char* f : {"id==nosuch", "platforms==linux/amd64", "capabilities", "id~=("}) {
    RunResult none = Ctr({"plugins", "ls", f});
    EXPECT_EQ(none.exit_code, 0) << f << ": " << none.err;
    EXPECT_EQ(none.out, "TYPE    ID    PLATFORMS    STATUS    \n") << f;
  }

  // Details of one plugin, with its requirements.
  RunResult d = Ctr({"plugins", "ls", "-d", "type==io.containerd.grpc.v1,id==namespaces"});
  EXPECT_EQ(d.out,
            "Type:         io.containerd.grpc.v1\n"
            "ID:           namespaces\n"
            "Requires:    \n"
            "              io.containerd.service.v1\n");
}

TEST_F(CtrFoundationTest, EventsShowNamespaceCreateUpdateDelete) {
  Background events({CtrPath(), "--address", socket_, "events"});
  ASSERT_TRUE(events.started());
  // ctr prints nothing until an event arrives, so poke the daemon until the subscription
  // is visibly live.
  bool live = false;
  for (int i = 0; i < 40 && !live; ++i) {
    ASSERT_EQ(Ctr({"ns", "label", "warmup", "i=" + std::to_string(i)}).exit_code, 0);
    live = events.ReadLine(std::chrono::milliseconds(100)).has_value();
  }
  ASSERT_TRUE(live) << "ctr events printed nothing: " << events.pending();
  while (events.ReadLine(std::chrono::milliseconds(200))) {
  }

  ASSERT_EQ(Ctr({"ns", "create", "n1", "a=b"}).exit_code, 0);
  ASSERT_EQ(Ctr({"ns", "label", "n1", "c=d"}, "other").exit_code, 0);
  ASSERT_EQ(Ctr({"ns", "rm", "n1"}).exit_code, 0);

  // "<timestamp> <namespace> <topic> <json>". containerd publishes create/update in the
  // caller's namespace and delete in the deleted one.
  std::vector<std::string> want = {
      R"( default /namespaces/create {"name":"n1","labels":{"a":"b"}})",
      R"( other /namespaces/update {"name":"n1","labels":{"c":"d"}})",
      R"( n1 /namespaces/delete {"name":"n1"})",
  };
  for (const auto& w : want) {
    auto line = events.ReadLine(std::chrono::seconds(3));
    ASSERT_TRUE(line.has_value()) << "no event for" << w << "; pending: " << events.pending();
    EXPECT_THAT(*line, HasSubstr(w));
    EXPECT_THAT(*line, HasSubstr(" +0000 UTC "));
  }
}

TEST_F(CtrFoundationTest, EventsFilterSelectsTopicAndNamespace) {
  Background events({CtrPath(), "--address", socket_, "events",
                     R"(topic=="/namespaces/create",namespace==other)"});
  ASSERT_TRUE(events.started());
  // Subscribed once an event matching the filter arrives.
  bool live = false;
  for (int i = 0; i < 40 && !live; ++i) {
    ASSERT_EQ(Ctr({"ns", "create", "w" + std::to_string(i)}, "other").exit_code, 0);
    live = events.ReadLine(std::chrono::milliseconds(100)).has_value();
  }
  ASSERT_TRUE(live) << events.pending();
  while (events.ReadLine(std::chrono::milliseconds(200))) {
  }
  ASSERT_EQ(Ctr({"ns", "create", "skipped"}, "default").exit_code, 0);  // wrong namespace
  ASSERT_EQ(Ctr({"ns", "label", "x1", "a=b"}, "other").exit_code, 0);   // wrong topic
  ASSERT_EQ(Ctr({"ns", "create", "wanted"}, "other").exit_code, 0);
  auto line = events.ReadLine(std::chrono::seconds(3));
  ASSERT_TRUE(line.has_value()) << events.pending();
  EXPECT_THAT(*line, HasSubstr(R"( other /namespaces/create {"name":"wanted"})"));
  EXPECT_THAT(*line, Not(HasSubstr("skipped")));
}

TEST_F(CtrFoundationTest, NamespaceLabelsSurviveRestart) {
  ASSERT_EQ(Ctr({"ns", "create", "n1", "a=b", "c=d"}).exit_code, 0);
  ASSERT_EQ(Ctr({"ns", "label", "n1", "e=f", "a="}).exit_code, 0);
  ASSERT_EQ(Ctr({"ns", "create", "n2"}).exit_code, 0);
  const std::string before = NsList();
  EXPECT_EQ(before,
            "NAME LABELS  \n"
            "n1   c=d,e=f \n"
            "n2           \n");
  ASSERT_EQ(StopDaemon(), 0);
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(NsList(), before);
  // And they still behave as stored objects: a duplicate is still refused.
  EXPECT_EQ(Ctr({"ns", "create", "n2"}).exit_code, 1);
}

}  // namespace
}  // namespace berth::testing
