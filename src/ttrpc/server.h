// ttrpc server: serves unary calls on Unix path sockets from one EventLoop, as containerd's
// shims (containerd.task.v2.Task) and the daemon's `<grpc socket>.ttrpc` events endpoint do.
//
// Behaviour follows Go ttrpc 1.1 (server.go, services.go):
// * any number of connections; any number of calls in flight per connection, answered in
//   whatever order the handlers finish;
// * unknown service → Unimplemented "service <name>", unknown method → Unimplemented
//   "method <name>"; an undecodable Request → InvalidArgument "unmarshal request error: ...";
//   an even stream id → InvalidArgument "StreamID must be odd for client initiated streams";
// * a frame longer than 4 MiB is discarded and answered ResourceExhausted on its stream; the
//   connection stays up. Response frames (type 2) and unknown types sent to the server are
//   ignored, as ttrpc does for forward compatibility; a ttrpc 1.2 data frame (type 3) for a
//   stream with no call in flight is answered InvalidArgument (we have no streams);
// * timeout_nano > 0 is the call's deadline. When it passes before the handler answers, the
//   server answers DeadlineExceeded "context deadline exceeded" itself and runs the
//   handler's OnCancel callback; a later answer is dropped. timeout_nano < 0 (already expired)
//   is answered DeadlineExceeded without running the handler;
// * a closed connection cancels its calls (OnCancel with Canceled "context canceled");
// * peers must have our effective uid and gid (SO_PEERCRED), like
//   ttrpc.UnixSocketRequireSameUser which containerd installs; others are disconnected.
//
// Example (shim):
//   auto loop = EventLoop::Create();
//   Server server(**loop);
//   RETURN_IF_ERROR(server.RegisterTyped<task::CreateTaskRequest, task::CreateTaskResponse>(
//       "containerd.task.v2.Task", "Create",
//       [&](const Context& ctx, const task::CreateTaskRequest& req)
//           -> Result<task::CreateTaskResponse> { ... }));
//   RETURN_IF_ERROR(server.RegisterTypedAsync<task::WaitRequest, task::WaitResponse>(
//       "containerd.task.v2.Task", "Wait",
//       [&](const Context& ctx, const task::WaitRequest& req,
//           TypedResponder<task::WaitResponse> r) { waiters.push_back(std::move(r)); }));
//   RETURN_IF_ERROR(server.Serve(UniqueFd(3)));
//   (*loop)->Run();
#pragma once

#include <google/protobuf/message_lite.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "common/fs.h"
#include "common/status.h"
#include "ttrpc/event_loop.h"
#include "ttrpc/protocol.h"

namespace berth::ttrpc {

namespace internal {
class ServerCore;
struct CallToken;
}  // namespace internal

// What a handler knows about its call.
struct Context {
  std::string service;
  std::string method;
  Metadata metadata;                          // Request.metadata as received
  std::optional<Clock::time_point> deadline;  // from timeout_nano; none = no deadline
  uint32_t stream_id = 0;
  // The peer's credentials at connect time (SO_PEERCRED).
  pid_t peer_pid = 0;
  uid_t peer_uid = 0;
  gid_t peer_gid = 0;
};

// Answers one call. Copyable; all copies answer the same call; every method is thread-safe.
// The first answer wins, later ones (and answers after a deadline or a closed connection) are
// dropped. If the last copy is destroyed without an answer, the call fails Internal — a call
// is never left hanging.
class Responder {
 public:
  void Reply(std::string payload) const;
  // Fails the call with `st`. An OK `st` is taken as Reply("").
  void Fail(Status st) const;
  void Send(Result<std::string> result) const;

  // True once the call has been answered or cancelled.
  bool done() const;
  // Runs `cb` on the loop thread if the call is cancelled before it is answered: deadline
  // passed (DeadlineExceeded), connection closed or server closed (Canceled). If it already
  // was cancelled, `cb` is posted at once. At most one callback; a later one replaces it.
  void OnCancel(std::function<void(const Status&)> cb) const;

 private:
  friend class internal::ServerCore;
  explicit Responder(std::shared_ptr<internal::CallToken> token) : token_(std::move(token)) {}
  std::shared_ptr<internal::CallToken> token_;
};

// A Responder that serializes a protobuf response.
template <typename Resp>
class TypedResponder {
 public:
  explicit TypedResponder(Responder r) : r_(std::move(r)) {}
  void Reply(const Resp& resp) const {
    std::string out;
    if (!resp.SerializeToString(&out)) {
      r_.Fail(Internal("ttrpc: error marshaling payload"));
      return;
    }
    r_.Reply(std::move(out));
  }
  void Fail(Status st) const { r_.Fail(std::move(st)); }
  bool done() const { return r_.done(); }
  void OnCancel(std::function<void(const Status&)> cb) const { r_.OnCancel(std::move(cb)); }
  const Responder& untyped() const { return r_; }

 private:
  Responder r_;
};

// A handler that answers before returning. Runs on the loop thread: it must not block.
using Handler = std::function<Result<std::string>(const Context& ctx, std::string_view payload)>;
// A handler that answers through `responder`, now or later, from any thread.
using AsyncHandler =
    std::function<void(const Context& ctx, std::string payload, Responder responder)>;

struct ServerOptions {
  // Refuse peers whose uid/gid differ from our effective ones (ttrpc's
  // UnixSocketRequireSameUser, installed by containerd for shims and its ttrpc socket).
  bool require_same_user = true;
  // Stop reading a connection's requests while this many response bytes wait for a peer
  // that does not read; resume below half of it.
  size_t max_pending_output = 8u << 20;
};

class Server {
 public:
  // `loop` must outlive the server.
  explicit Server(EventLoop& loop, ServerOptions opts = {});
  // Closes (as Close) and waits for the loop to have done so.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers `service`/`method` (e.g. "containerd.task.v2.Task", "Create"). Thread-safe; may
  // be called while serving. AlreadyExists if that method is already registered.
  Status Register(std::string_view service, std::string_view method, Handler handler);
  Status RegisterAsync(std::string_view service, std::string_view method, AsyncHandler handler);

  // Protobuf-typed forms. An undecodable request fails Internal "ttrpc: error unmarshalling
  // payload: ..." as in Go ttrpc.
  template <typename Req, typename Resp>
  Status RegisterTyped(std::string_view service, std::string_view method,
                       std::function<Result<Resp>(const Context&, const Req&)> fn);
  template <typename Req, typename Resp>
  Status RegisterTypedAsync(
      std::string_view service, std::string_view method,
      std::function<void(const Context&, const Req&, TypedResponder<Resp>)> fn);

  // Creates a Unix socket at `path` (an optional "unix://" prefix is stripped) with mode 0600
  // and serves it. The path must not exist (AlreadyExists); the socket file is removed when
  // the server stops listening. Abstract addresses ("@...") are refused (CVE-2020-15257).
  Status Listen(const std::string& path);
  // Serves an already listening Unix path socket, e.g. fd 3 handed over by `shim start`. Made
  // non-blocking and close-on-exec; the server owns it. Its path is not removed on close.
  Status Serve(UniqueFd listener);

  // Graceful stop, from any thread: stop accepting, close each connection once it has no call
  // in flight and its answers are written, and force-close what is left after `grace`.
  // `done` runs on the loop thread when the last connection is gone. Returns at once.
  void Shutdown(std::chrono::nanoseconds grace, std::function<void()> done = {});
  // Immediate stop, from any thread: listeners and connections closed, calls cancelled.
  void Close();

  size_t ConnectionCountForTest() const;

 private:
  std::shared_ptr<internal::ServerCore> core_;
};

template <typename Req, typename Resp>
Status Server::RegisterTyped(std::string_view service, std::string_view method,
                             std::function<Result<Resp>(const Context&, const Req&)> fn) {
  static_assert(std::is_base_of_v<google::protobuf::MessageLite, Req>);
  static_assert(std::is_base_of_v<google::protobuf::MessageLite, Resp>);
  return Register(
      service, method,
      [fn = std::move(fn)](const Context& ctx, std::string_view payload) -> Result<std::string> {
        Req req;
        if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
          return Err(Code::kInternal,
                     "ttrpc: error unmarshalling payload: invalid wire-format data");
        }
        ASSIGN_OR_RETURN(Resp resp, fn(ctx, req));
        std::string out;
        if (!resp.SerializeToString(&out)) {
          return Err(Code::kInternal, "ttrpc: error marshaling payload");
        }
        return out;
      });
}

template <typename Req, typename Resp>
Status Server::RegisterTypedAsync(
    std::string_view service, std::string_view method,
    std::function<void(const Context&, const Req&, TypedResponder<Resp>)> fn) {
  static_assert(std::is_base_of_v<google::protobuf::MessageLite, Req>);
  static_assert(std::is_base_of_v<google::protobuf::MessageLite, Resp>);
  return RegisterAsync(
      service, method, [fn = std::move(fn)](const Context& ctx, std::string payload, Responder r) {
        Req req;
        if (!req.ParseFromString(payload)) {
          r.Fail(Internal("ttrpc: error unmarshalling payload: invalid wire-format data"));
          return;
        }
        fn(ctx, req, TypedResponder<Resp>(std::move(r)));
      });
}

}  // namespace berth::ttrpc
