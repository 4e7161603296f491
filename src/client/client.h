// berth's client library (containerd's Go `client` package, in C++): what the `berth` CLI and
// the coming distribution code (pull/push) use to talk to berthd. This header is the
// connection: the gRPC channel, the per-call `containerd-namespace` and `containerd-lease`
// headers, and gRPC failures as berth Statuses. Nothing in src/client prints or parses flags.
#pragma once

#include <google/protobuf/map.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/validate.h"

namespace berth::client {

inline constexpr char kDefaultAddress[] = "/run/berth/berthd.sock";
inline constexpr char kNamespaceHeader[] = "containerd-namespace";
inline constexpr char kLeaseHeader[] = "containerd-lease";
// GC labels the CLI sets: a lease's expiry (RFC 3339) and a config's unpacked snapshot
// (suffix: the snapshotter).
inline constexpr char kExpireLabel[] = "containerd.io/gc.expire";
inline constexpr char kSnapshotRefLabel[] = "containerd.io/gc.ref.snapshot.";
inline constexpr int kMaxMessageSize = 16 << 20;  // containerd's client default

class Client {
 public:
  // Opens a channel to the Unix socket at `address` ("/path", "unix:/path" or
  // "unix:///path") and waits up to `timeout` (zero: forever) for berthd to answer. Failure is
  // Unavailable with a message that names the socket.
  static Result<std::unique_ptr<Client>> Connect(std::string_view address, std::string ns,
                                                 std::chrono::milliseconds timeout);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& ns() const { return ns_; }

  // A context for one call, carrying the namespace header (and the lease header, when
  // `lease` is set: what the call creates is then held by that lease). Calls fail fast:
  // waiting for the daemon happened once, in Connect.
  std::unique_ptr<grpc::ClientContext> NewContext(const std::string& lease = "") const;

 private:
  Client(std::shared_ptr<grpc::Channel> channel, std::string ns)
      : channel_(std::move(channel)), ns_(std::move(ns)) {}

  std::shared_ptr<grpc::Channel> channel_;
  std::string ns_;
};

// The socket path in an --address value (strips a "unix:" or "unix://" scheme).
std::string SocketPath(std::string_view address);

// gRPC codes equal ours, so this is a cast plus the message.
Status FromGrpc(const grpc::Status& s);

// Go-style durations as ctr takes them: "5s", "500ms", "1m", "1h30m"; a bare number is
// seconds. Negative values are InvalidArgument.
Result<std::chrono::milliseconds> ParseDuration(std::string_view s);

// RFC 3339 in UTC with nanoseconds trimmed of trailing zeros: "2024-05-01T12:00:00.5Z"
// (Go's time.RFC3339Nano); without the fraction for gc.expire labels.
std::string FormatRfc3339(std::chrono::system_clock::time_point t, bool with_fraction = true);

inline Labels ToLabels(const google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

}  // namespace berth::client
