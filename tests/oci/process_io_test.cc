// ProcessIo and the console socket without an OCI runtime: a plain child spawned with the
// stdio ProcessIo hands out plays the container process.
#include "oci/process_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "oci/console.h"
#include "../common/wait.h"
#include "test_util.h"

namespace berth::oci {
namespace {

using namespace std::chrono_literals;
using testing::Env;
using testing::MakeFifo;
using testing::OpenFifoReader;
using testing::ReadToEof;
using testing::ReadUntil;
using testing::TempDir;

std::unique_ptr<ProcessIo> OpenIo(const StdioSpec& s, const std::string& id = "p1") {
  auto io = ProcessIo::Open(Env()->loop(), Env()->reaper(), s, IoOptions{id, "testns"});
  if (!io) ADD_FAILURE() << io.error().ToString();
  return io ? std::move(*io) : nullptr;
}

// Starts argv with the stdio the runtime would get, then lets ProcessIo copy.
Spawned StartProcess(ProcessIo& io, std::vector<std::string> argv) {
  SpawnSpec spec;
  spec.argv = std::move(argv);
  auto rs = io.runtime_stdio();
  if (rs) {
    if (rs->in >= 0) spec.fds.emplace_back(0, rs->in);
    if (rs->out >= 0) spec.fds.emplace_back(1, rs->out);
    if (rs->err >= 0) spec.fds.emplace_back(2, rs->err);
  }
  auto sp = Env()->reaper()->Spawn(spec);
  EXPECT_TRUE(sp.has_value()) << sp.error().ToString();
  if (!rs) return *sp;
  Status st = io.Start();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return *sp;
}

TEST(OciStdio, FifoRoundTrip) {
  TempDir t;
  StdioSpec s{MakeFifo(t / "in"), MakeFifo(t / "out"), MakeFifo(t / "err")};
  UniqueFd out = OpenFifoReader(s.out), err = OpenFifoReader(s.err);
  auto io = OpenIo(s);
  ASSERT_TRUE(io);
  UniqueFd in(::open(s.in.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));  // the client's writer
  ASSERT_TRUE(in.valid());
  auto p = StartProcess(*io, {"sh", "-c", "read line; echo \"got $line\"; echo oops >&2"});
  ASSERT_TRUE(testing::WriteString(in.get(), "hi\n"));
  EXPECT_EQ(ReadToEof(out.get()), "got hi\n");
  EXPECT_EQ(ReadToEof(err.get()), "oops\n");
  auto e = p.exit->WaitFor(10s);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status, 0);
  EXPECT_TRUE(io->WaitOutput(5s));
}

// The process sees EOF only once both the client's writer and ours (CloseIO) are gone.
TEST(OciStdio, CloseStdinDeliversEof) {
  TempDir t;
  StdioSpec s{MakeFifo(t / "in"), MakeFifo(t / "out"), ""};
  UniqueFd out = OpenFifoReader(s.out);
  auto io = OpenIo(s);
  ASSERT_TRUE(io);
  UniqueFd in(::open(s.in.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  auto p = StartProcess(*io, {"cat"});
  ASSERT_TRUE(testing::WriteString(in.get(), "abc\n"));
  EXPECT_EQ(ReadUntil(out.get(), [](auto& d) { return d == "abc\n"; }), "abc\n");
  in.reset();
  EXPECT_FALSE(p.exit->WaitFor(300ms).has_value()) << "stdin closed before CloseIO";
  io->CloseStdin();
  auto e = p.exit->WaitFor(10s);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status, 0);
}

// No client reader on stdout: opening never blocks, the process runs to completion.
TEST(OciStdio, OpenNeverBlocksOnFifos) {
  TempDir t;
  StdioSpec s{MakeFifo(t / "in"), MakeFifo(t / "out"), MakeFifo(t / "err")};
  decltype(OpenIo(s)) io;
  berth::testing::FinishesWithin([&] { io = OpenIo(s); }, "OpenIo with no readers");
  ASSERT_TRUE(io);
  auto p = StartProcess(*io, {"sh", "-c", "echo nobody reads this; exit 4"});
  auto e = p.exit->WaitFor(10s);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status, 4);
  EXPECT_TRUE(io->WaitOutput(5s));
}

TEST(OciStdio, NullIo) {
  auto io = OpenIo(StdioSpec{});
  ASSERT_TRUE(io);
  auto rs = io->runtime_stdio();
  ASSERT_TRUE(rs.has_value());
  EXPECT_EQ(rs->in, -1);
  EXPECT_EQ(rs->out, -1);
  EXPECT_EQ(rs->err, -1);
}

TEST(OciStdio, BadEndpoints) {
  TempDir t;
  std::ofstream(t / "regular") << "x";
  auto r = ProcessIo::Open(Env()->loop(), Env()->reaper(), StdioSpec{t / "regular", "", ""}, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  r = ProcessIo::Open(Env()->loop(), Env()->reaper(), StdioSpec{"", t / "missing", ""}, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  r = ProcessIo::Open(Env()->loop(), Env()->reaper(), StdioSpec{"", "gopher://x/y", ""}, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(OciStdio, FileUriAppendsBothStreams) {
  TempDir t;
  std::string log = t / "logs/deeper/out.log";
  std::filesystem::create_directories(t / "logs/deeper");
  std::ofstream(log) << "old\n";
  std::string uri = "file://" + log;
  auto io = OpenIo(StdioSpec{"", uri, uri});
  ASSERT_TRUE(io);
  auto p = StartProcess(*io, {"sh", "-c", "echo to-out; echo to-err >&2"});
  ASSERT_TRUE(p.exit->WaitFor(10s).has_value());
  EXPECT_TRUE(io->WaitOutput(5s));
  io->Close();
  std::string text = testing::Slurp(log);
  EXPECT_TRUE(text.starts_with("old\n")) << text;
  EXPECT_NE(text.find("to-out\n"), std::string::npos) << text;
  EXPECT_NE(text.find("to-err\n"), std::string::npos) << text;
}

TEST(OciStdio, BinaryUriStartsLogger) {
  TempDir t;
  std::string script = t / "logger.sh";
  // Close() sends SIGTERM at once (as containerd): a logger flushes before it exits.
  std::ofstream(script) << "#!/bin/sh\n"
                           "trap '' TERM\n"
                           "echo \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$3\"\n"
                           "/bin/cat <&3 > \"$1\" 5>&- &\n"
                           "/bin/cat <&4 > \"$2\" 5>&- &\n"
                           "echo ready >&5\n"
                           "exec 5>&-\n"
                           "wait\n";
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  std::string uri =
      "binary://" + script + "?" + (t / "out") + "&" + (t / "err") + "&" + (t / "env");
  auto io = OpenIo(StdioSpec{"", uri, uri}, "c9");
  ASSERT_TRUE(io);
  auto p = StartProcess(*io, {"sh", "-c", "echo to-out; echo to-err >&2"});
  ASSERT_TRUE(p.exit->WaitFor(10s).has_value());
  io->Close();  // the logger saw EOF on both pipes and exits; Close reaps it
  EXPECT_EQ(testing::Slurp(t / "out"), "to-out\n");
  EXPECT_EQ(testing::Slurp(t / "err"), "to-err\n");
  EXPECT_EQ(testing::Slurp(t / "env"), "testns/c9\n");
}

// The runtime's side of --console-socket: connect and send the master with SCM_RIGHTS.
void SendFd(const std::string& path, int fd) {
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(s);
    return;
  }
  char name[] = "/dev/ptmx";
  iovec iov{name, sizeof name};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  [[maybe_unused]] ssize_t n = ::sendmsg(s, &msg, 0);
  ::close(s);
}

TEST(OciStdio, ConsoleSocketAndPtyCopy) {
  TempDir t;
  auto sock = ConsoleSocket::Create(t.path());
  ASSERT_TRUE(sock.has_value()) << sock.error().ToString();
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(master.valid());
  ASSERT_EQ(::grantpt(master.get()), 0);
  ASSERT_EQ(::unlockpt(master.get()), 0);
  std::string slave_name = ::ptsname(master.get());
  std::thread sender([&] { SendFd((*sock)->path(), master.get()); });
  auto got = (*sock)->ReceiveMaster(5s);
  sender.join();
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  master.reset();  // the "runtime" closes its copy

  StdioSpec s{MakeFifo(t / "in"), MakeFifo(t / "out"), "", /*terminal=*/true};
  UniqueFd out = OpenFifoReader(s.out);
  auto io = OpenIo(s);
  ASSERT_TRUE(io);
  EXPECT_FALSE(io->runtime_stdio().has_value());
  ASSERT_TRUE(io->AttachConsole(std::move(*got)).ok());
  ASSERT_TRUE(io->Resize(100, 40).ok());

  UniqueFd slave(::open(slave_name.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(slave.valid());
  winsize ws{};
  ASSERT_EQ(::ioctl(slave.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_col, 100);
  EXPECT_EQ(ws.ws_row, 40);

  SpawnSpec spec;
  spec.argv = {"sh", "-c", "read line; echo \"pty:$line\""};
  spec.fds = {{0, slave.get()}, {1, slave.get()}, {2, slave.get()}};
  auto p = Env()->reaper()->Spawn(spec);
  ASSERT_TRUE(p.has_value());
  slave.reset();
  UniqueFd in(::open(s.in.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(testing::WriteString(in.get(), "hello\n"));
  std::string text = ReadUntil(out.get(), [](auto& d) { return d.find("pty:hello") != d.npos; });
  EXPECT_NE(text.find("pty:hello"), std::string::npos) << text;
  ASSERT_TRUE(p->exit->WaitFor(10s).has_value());
  EXPECT_TRUE(io->WaitOutput(5s));
}

TEST(OciStdio, ConsoleSocketTimesOut) {
  TempDir t;
  auto sock = ConsoleSocket::Create(t.path());
  ASSERT_TRUE(sock.has_value());
  auto got = (*sock)->ReceiveMaster(100ms);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), Code::kDeadlineExceeded);
}

}  // namespace
}  // namespace berth::oci
