// CliRuntime against a fake runtime (a shell script, in the spirit of containerd's runc-fp):
// the exact command lines, error read-back from the JSON log, temp files, timeouts.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "oci/oci_runtime.h"
#include "../common/wait.h"
#include "test_util.h"

namespace berth::oci {
namespace {

using namespace std::chrono_literals;
using testing::Env;
using testing::Slurp;
using testing::TempDir;

// Records its arguments (one line per call), answers --version, `state` and `ps`, and fails
// every other command the way runc does: a JSON error line in --log and exit 1.
class OciFakeRuntime : public ::testing::Test {
 protected:
  void SetUp() override {
    script_ = tmp_ / "fakert";
    std::ofstream(script_) << R"(#!/bin/sh
echo "$*" >> ")" << (tmp_ / "calls")
                           << R"("
log=""
for a in "$@"; do case "$a" in --log=*) log="${a#--log=}";; esac; done
for a in "$@"; do
  case "$a" in
    --version) echo "fakert version 0.1.2"; echo "spec: 1.0.2"; exit 0;;
    state) echo '{"ociVersion":"1.0.2","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-01T00:00:00Z","annotations":{"a":"b"}}'; exit 0;;
    ps) echo '[3,4,5]'; exit 0;;
    events) exec sleep 1000;;
    exec)
      for b in "$@"; do case "$b" in --process=*) cp "${b#--process=}" ")"
                           << (tmp_ / "process.copy") << R"(";; esac; done
      exit 0;;
    start|create|kill|delete|pause|resume|update)
      [ -n "$log" ] && printf '{"level":"info","msg":"working"}\n{"level":"error","msg":"boom %s"}\n' "$a" >> "$log"
      echo "stderr text" >&2
      exit 1;;
  esac
done
exit 0
)";
    std::filesystem::permissions(script_, std::filesystem::perms::owner_all);
  }

  std::unique_ptr<CliRuntime> Make(RuntimeOptions o) {
    o.binary = script_;
    auto rt = CliRuntime::Create(Env()->reaper(), o, Env()->cgroups());
    EXPECT_TRUE(rt.has_value()) << rt.error().ToString();
    return rt ? std::move(*rt) : nullptr;
  }

  std::vector<std::string> Calls() {
    std::vector<std::string> out;
    std::istringstream in(Slurp(tmp_ / "calls"));
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  TempDir tmp_;
  std::string script_;
};

TEST_F(OciFakeRuntime, VersionAndInfo) {
  auto rt = Make({});
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->info().name, "fakert");
  EXPECT_EQ(rt->info().version, "0.1.2");
  EXPECT_EQ(rt->info().path, script_);
  EXPECT_FALSE(rt->info().hides_unified_cgroup);  // only crun needs the hybrid fix
}

TEST_F(OciFakeRuntime, NoVersionProbe) {
  RuntimeOptions o;
  o.probe_version = false;
  auto rt = Make(o);
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->info().name, "fakert");  // the file name
  EXPECT_EQ(rt->info().version, "");
  EXPECT_TRUE(Calls().empty());  // the runtime was not started
}

TEST_F(OciFakeRuntime, CommandLinesAndLogErrors) {
  RuntimeOptions o;
  o.root = "/run/fake/ns1";
  o.log_path = tmp_ / "log.json";
  o.systemd_cgroup = true;
  auto rt = Make(o);
  ASSERT_TRUE(rt);
  std::string g =
      "--root=/run/fake/ns1 --log=" + o.log_path + " --log-format=json --systemd-cgroup ";

  Status st = rt->Kill("c1", 15, true);
  EXPECT_EQ(st.code(), Code::kUnknown);
  EXPECT_EQ(st.message(), "OCI runtime kill failed: boom kill");  // the log, not stderr

  CreateOptions co;
  co.bundle = tmp_.path();  // also the runtime's working directory
  co.pid_file = tmp_ / "init.pid";
  co.console_socket = "/tmp/s.sock";
  co.no_pivot = true;
  st = rt->Create("c1", co);
  EXPECT_EQ(st.message(), "OCI runtime create failed: boom create");

  EXPECT_FALSE(rt->Delete("c1", true).ok());
  EXPECT_FALSE(rt->Pause("c1").ok());
  EXPECT_FALSE(rt->Resume("c1").ok());
  EXPECT_FALSE(rt->Start("c1").ok());

  auto state = rt->State("c1");
  ASSERT_TRUE(state.has_value()) << state.error().ToString();
  EXPECT_EQ(state->pid, 42);
  EXPECT_EQ(state->status, "running");
  EXPECT_EQ(state->annotations.at("a"), "b");
  auto pids = rt->Ps("c1");
  ASSERT_TRUE(pids.has_value());
  EXPECT_EQ(*pids, (std::vector<pid_t>{3, 4, 5}));

  auto calls = Calls();
  ASSERT_EQ(calls.size(), 9u);  // --version, then the eight calls above
  EXPECT_EQ(calls[1], g + "kill --all c1 15");
  EXPECT_EQ(calls[2], g + "create --bundle=" + tmp_.path() + " --pid-file=" + (tmp_ / "init.pid") +
                          " --console-socket=/tmp/s.sock --no-pivot c1");
  EXPECT_EQ(calls[3], g + "delete --force c1");
  EXPECT_EQ(calls[4], g + "pause c1");
  EXPECT_EQ(calls[5], g + "resume c1");
  EXPECT_EQ(calls[6], g + "start c1");
  EXPECT_EQ(calls[7], g + "state c1");
  EXPECT_EQ(calls[8], g + "ps --format=json c1");
}

TEST_F(OciFakeRuntime, WithoutLogTheOutputIsTheMessage) {
  auto rt = Make({});
  ASSERT_TRUE(rt);
  Status st = rt->Pause("c1");
  EXPECT_EQ(st.message(), "OCI runtime pause failed: stderr text");
}

TEST_F(OciFakeRuntime, ExecWritesAndRemovesTheProcessFile) {
  RuntimeOptions o;
  o.temp_dir = tmp_ / "tmp";
  std::filesystem::create_directories(o.temp_dir);
  auto rt = Make(o);
  ASSERT_TRUE(rt);
  ExecOptions eo;
  eo.process_json = R"({"args":["sh"],"cwd":"/"})";
  eo.pid_file = "/b/e1.pid";
  ASSERT_TRUE(rt->Exec("c1", eo).ok());
  EXPECT_EQ(Slurp(tmp_ / "process.copy"), eo.process_json);
  EXPECT_TRUE(std::filesystem::is_empty(o.temp_dir));  // the temp file is gone
  auto calls = Calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(calls[1].starts_with("exec --process=" + o.temp_dir + "/process-")) << calls[1];
  EXPECT_TRUE(calls[1].ends_with(" --detach --pid-file=/b/e1.pid c1")) << calls[1];
  EXPECT_EQ(rt->Update("c1", "[1,2]").code(), Code::kInvalidArgument);
}

TEST_F(OciFakeRuntime, HungRuntimeIsKilledAtTheDeadline) {
  RuntimeOptions o;
  o.timeout = 300ms;
  auto rt = Make(o);
  ASSERT_TRUE(rt);
  decltype(rt->Stats("c1")) r;
  // `events` sleeps far longer than this wait in the fake: only the kill returns in time.
  berth::testing::FinishesWithin([&] { r = rt->Stats("c1"); }, "Stats on a hung runtime");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded) << r.error().ToString();
}

TEST(OciCliRuntime, MissingBinary) {
  RuntimeOptions o;
  o.binary = "berth-no-such-runtime";
  auto rt = CliRuntime::Create(Env()->reaper(), o, Env()->cgroups());
  ASSERT_FALSE(rt.has_value());
  EXPECT_EQ(rt.error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace berth::oci
