#include "client/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace berth::client {
namespace {

// One plain connect(2) before gRPC gets involved: gRPC would retry a missing or refused
// socket silently until the deadline, while errno says at once what is wrong.
int ProbeSocket(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return ENAMETOOLONG;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int err = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

Status CannotConnect(const std::string& path, const std::string& why) {
  return Unavailable("cannot connect to berthd at " + path + " (" + why +
                     "): is it running? Use --address or BERTH_ADDRESS for another socket");
}

}  // namespace

std::string SocketPath(std::string_view address) {
  if (address.starts_with("unix://"))
    address.remove_prefix(7);
  else if (address.starts_with("unix:"))
    address.remove_prefix(5);
  return std::string(address);
}

Result<std::unique_ptr<Client>> Client::Connect(std::string_view address, std::string ns,
                                                std::chrono::milliseconds timeout) {
  std::string path = SocketPath(address);
  if (path.empty()) return std::unexpected(InvalidArgument("--address must not be empty"));
  // EAGAIN (backlog full) means a busy daemon: let gRPC wait for it.
  if (int err = ProbeSocket(path); err != 0 && err != EAGAIN) {
    std::string why = std::strerror(err);
    why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    return std::unexpected(CannotConnect(path, why));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageSize);
  args.SetMaxSendMessageSize(kMaxMessageSize);
  auto channel =
      grpc::CreateCustomChannel("unix:" + path, grpc::InsecureChannelCredentials(), args);
  bool ready = timeout.count() == 0
                   ? channel->WaitForConnected(gpr_inf_future(GPR_CLOCK_REALTIME))
                   : channel->WaitForConnected(std::chrono::system_clock::now() + timeout);
  if (!ready) {
    return std::unexpected(
        CannotConnect(path, "no gRPC answer within " + std::to_string(timeout.count()) + "ms"));
  }
  return std::unique_ptr<Client>(new Client(std::move(channel), std::move(ns)));
}

std::unique_ptr<grpc::ClientContext> Client::NewContext(const std::string& lease) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // Namespaced services require it; the rest ignore it, so every call carries it.
  ctx->AddMetadata(kNamespaceHeader, ns_);
  if (!lease.empty()) ctx->AddMetadata(kLeaseHeader, lease);
  return ctx;
}

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return Status::Ok();
  return Status(static_cast<Code>(s.error_code()), s.error_message());
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view s) {
  auto bad = [&] {
    return Err(Code::kInvalidArgument,
               "invalid duration " + Quote(s) + " (want e.g. 5s, 500ms, 1m; 0 waits forever)");
  };
  if (s.empty()) return bad();
  std::string with_unit(s);
  if (s.find_first_not_of("0123456789.") == std::string_view::npos) with_unit += "s";
  double total_ms = 0;
  std::string_view rest = with_unit;
  while (!rest.empty()) {
    double n = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (ec != std::errc() || !std::isfinite(n) || n < 0) return bad();
    rest.remove_prefix(static_cast<size_t>(end - rest.data()));
    size_t unit_len = 0;
    while (unit_len < rest.size() && std::isalpha(static_cast<unsigned char>(rest[unit_len]))) {
      ++unit_len;
    }
    std::string_view unit = rest.substr(0, unit_len);
    rest.remove_prefix(unit_len);
    if (unit == "ms") {
      total_ms += n;
    } else if (unit == "s") {
      total_ms += n * 1000;
    } else if (unit == "m") {
      total_ms += n * 60'000;
    } else if (unit == "h") {
      total_ms += n * 3'600'000;
    } else {
      return bad();
    }
  }
  if (total_ms > 1e12) return bad();
  return std::chrono::milliseconds(static_cast<int64_t>(total_ms));
}

std::string FormatRfc3339(std::chrono::system_clock::time_point t, bool with_fraction) {
  using namespace std::chrono;
  auto ns = duration_cast<nanoseconds>(t.time_since_epoch()).count();
  int64_t secs = ns / 1'000'000'000;
  int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (with_fraction && frac != 0) {
    char f[16];
    std::snprintf(f, sizeof f, ".%09lld", static_cast<long long>(frac));
    std::string fs = f;
    fs.erase(fs.find_last_not_of('0') + 1);
    out += fs;
  }
  return out + "Z";
}

}  // namespace berth::client
