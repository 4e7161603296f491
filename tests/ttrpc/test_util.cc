#include "test_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace berth::ttrpc::testing {

TempDir::TempDir() {
  std::string tmpl = "/tmp/ttrpc-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

RawConn::RawConn(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) fd_ = std::move(fd);
}

bool RawConn::Write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawConn::SendRequest(uint32_t stream_id, const Request& req) {
  return Write(MakeFrame(stream_id, MessageType::kRequest, EncodeRequest(req)));
}

std::optional<Frame> RawConn::ReadFrame(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (ready_.empty() && !eof_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[65536];
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n <= 0) {
      eof_ = true;
      break;
    }
    reader_.Feed(std::string_view(buf, static_cast<size_t>(n)), &ready_);
  }
  if (ready_.empty()) return std::nullopt;
  FrameReader::Event ev = std::move(ready_.front());
  ready_.erase(ready_.begin());
  return Frame{ev.header, std::move(ev.payload)};
}

std::optional<Response> RawConn::ReadResponse(uint32_t stream_id,
                                              std::chrono::milliseconds timeout) {
  auto f = ReadFrame(timeout);
  if (!f) {
    ADD_FAILURE() << "no response on stream " << stream_id;
    return std::nullopt;
  }
  EXPECT_EQ(f->header.stream_id, stream_id);
  EXPECT_EQ(f->header.type, static_cast<uint8_t>(MessageType::kResponse));
  auto r = DecodeResponse(f->payload);
  if (!r) {
    ADD_FAILURE() << "bad response: " << r.error().ToString();
    return std::nullopt;
  }
  return *r;
}

bool RawConn::WaitClosed(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    ready_.clear();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char buf[65536];
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n <= 0) eof_ = true;
  }
  return true;
}

UniqueFd ListenUnix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(fd.get(), 64) != 0) {
    ADD_FAILURE() << "listen " << path << ": " << std::strerror(errno);
    return UniqueFd();
  }
  return fd;
}

UniqueFd AcceptWithTimeout(int listener, std::chrono::milliseconds timeout) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return UniqueFd();
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

namespace {

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

bool Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, pid_t* pid) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  int rc = posix_spawnp(pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) ADD_FAILURE() << "spawn " << argv[0] << ": " << std::strerror(rc);
  return rc == 0;
}

int WaitWithTimeout(pid_t pid, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return DecodeWait(status);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() >= end) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return DecodeWait(status);
}

}  // namespace

int RunCommand(const std::vector<std::string>& argv, std::string* out, std::string* err,
               std::chrono::seconds timeout) {
  TempDir dir;
  std::string out_path = dir.Join("out"), err_path = dir.Join("err");
  UniqueFd o(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  UniqueFd e(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  pid_t pid;
  if (!Spawn(argv, o.get(), e.get(), &pid)) return -1;
  int code = WaitWithTimeout(pid, timeout);
  if (out) *out = ReadFileOrEmpty(out_path);
  if (err) *err = ReadFileOrEmpty(err_path);
  return code;
}

bool Child::Start(const std::vector<std::string>& argv, const std::string& log_path) {
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return false;
  return Spawn(argv, log.get(), log.get(), &pid_);
}

int Child::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int code = WaitWithTimeout(pid_, std::chrono::seconds(10));
  pid_ = -1;
  return code;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string PseudoRandomBytes(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed ? seed : 1;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return out;
}

}  // namespace berth::ttrpc::testing
