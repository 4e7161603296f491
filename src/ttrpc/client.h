// ttrpc client: unary calls over one Unix socket connection, as containerd uses to drive a
// shim (containerd.task.v2.Task) and as shims use to forward events to the daemon.
//
// Calls are multiplexed: stream ids are odd and increasing (1, 3, 5, ...), answers are
// matched by id and may arrive in any order. Call() may be used from many threads at once.
// The connection lives on an EventLoop: the client's own (one thread, started by Connect) or
// one the caller passes in.
//
// Errors a call can return, besides the server's own status:
// * Unavailable "ttrpc: closed" — the connection ended (either side) or Close() was called;
//   every call in flight fails with it;
// * DeadlineExceeded "context deadline exceeded" — the call's timeout passed first (the same
//   timeout travels as timeout_nano, so the server gives up too);
// * ResourceExhausted "message length N exceed maximum message size of 4194304" — the
//   request is over ttrpc's 4 MiB limit (not sent), or the answer was (discarded);
// * Internal — the server sent something that is not a valid response for the stream.
#pragma once

#include <google/protobuf/message_lite.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "ttrpc/event_loop.h"
#include "ttrpc/protocol.h"

namespace berth::ttrpc {

namespace internal {
class ClientCore;
}

struct CallOptions {
  // Deadline of the call, sent as timeout_nano; none = wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout;
  // Request.metadata, e.g. {"containerd-namespace-ttrpc", "default"}.
  Metadata metadata;
};

struct ClientOptions {
  // How long connect(2) may wait for a listener with a full backlog.
  std::chrono::milliseconds connect_timeout{10000};
  // Runs once on the loop thread when the connection ends, with the reason. containerd uses
  // this to clean up after a shim that went away.
  std::function<void(const Status&)> on_close;
};

class Client {
 public:
  // Connects to the Unix socket `address` ("/path" or "unix:///path"; abstract addresses are
  // refused) and starts a thread running the client's own loop.
  // Unavailable "dial unix <path>: <reason>" if nobody listens there.
  static Result<std::unique_ptr<Client>> Connect(std::string_view address, ClientOptions opts = {});
  // The same on the caller's loop, which must outlive the client.
  static Result<std::unique_ptr<Client>> Connect(EventLoop& loop, std::string_view address,
                                                 ClientOptions opts = {});
  // Closes the connection; calls in flight fail Unavailable. A client with its own loop must
  // not be destroyed from one of its own callbacks (the destructor joins that thread).
  ~Client();

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `payload` (a serialized request message) and waits for the answer payload.
  // Thread-safe. Must not be called on the loop thread (it would wait for itself): that is
  // FailedPrecondition; use CallAsync there.
  Result<std::string> Call(std::string_view service, std::string_view method, std::string payload,
                           const CallOptions& opts = {});
  // Protobuf form: serializes `req`, parses the answer into `*resp`.
  Status Call(std::string_view service, std::string_view method,
              const google::protobuf::MessageLite& req, google::protobuf::MessageLite* resp,
              const CallOptions& opts = {});

  // Starts a call; `done` runs exactly once, on the loop thread (or on the calling thread when
  // the call fails before it is sent). Thread-safe, usable on the loop thread.
  void CallAsync(std::string_view service, std::string_view method, std::string payload,
                 const CallOptions& opts, std::function<void(Result<std::string>)> done);

  // Closes the connection. Thread-safe, idempotent; calls in flight fail Unavailable.
  void Close();
  // True once the connection has ended or Close was called.
  bool closed() const;

 private:
  Client(std::unique_ptr<LoopThread> own, EventLoop& loop,
         std::shared_ptr<internal::ClientCore> core);
  static Result<std::unique_ptr<Client>> ConnectOn(std::unique_ptr<LoopThread> own, EventLoop& loop,
                                                   std::string_view address, ClientOptions opts);

  std::unique_ptr<LoopThread> own_loop_;  // null when running on the caller's loop
  EventLoop& loop_;
  std::shared_ptr<internal::ClientCore> core_;
};

}  // namespace berth::ttrpc
