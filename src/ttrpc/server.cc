#include "ttrpc/server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "ttrpc/conn.h"

namespace berth::ttrpc {

namespace internal {

// Shared between the server (loop thread) and the Responder copies (any thread).
struct CallState {
  std::atomic<bool> done{false};  // answered or cancelled; whoever flips it owns the outcome
  std::mutex mu;
  std::function<void(const Status&)> on_cancel GUARDED_BY(mu);
  std::optional<Status> cancelled GUARDED_BY(mu);
  bool answered GUARDED_BY(mu) = false;
  Poster poster;
  std::weak_ptr<ServerCore> server;
  uint64_t conn_id = 0;
  uint32_t stream_id = 0;

  // Loop thread. False if an answer got there first (it is then on its way to the loop).
  bool TryCancel(const Status& why) {
    if (done.exchange(true)) return false;
    std::function<void(const Status&)> cb;
    {
      std::lock_guard lock(mu);
      cancelled = why;
      cb = std::exchange(on_cancel, nullptr);
    }
    if (cb) cb(why);
    return true;
  }
};

// The Responders' shared handle. Its destruction without an answer fails the call.
struct CallToken {
  std::shared_ptr<CallState> call;
  ~CallToken();
};

class ServerCore : public std::enable_shared_from_this<ServerCore> {
 public:
  ServerCore(EventLoop& loop, ServerOptions opts) : loop_(loop), opts_(opts) {}

  Status Register(std::string_view service, std::string_view method, AsyncHandler h);
  Status AddListener(UniqueFd fd, std::string unlink_path);
  void Shutdown(std::chrono::nanoseconds grace, std::function<void()> done);
  void Close();
  size_t connection_count() const { return conns_.size(); }

  // Delivers a handler's answer. Loop thread.
  void Complete(uint64_t conn_id, uint32_t stream_id, Result<std::string> result);

  EventLoop& loop() { return loop_; }

 private:
  struct Listener {
    UniqueFd fd;
    std::string unlink_path;
  };
  struct Call {
    std::shared_ptr<CallState> state;
    EventLoop::TimerId timer = 0;
  };
  struct Conn {
    std::shared_ptr<FramedConn> io;
    std::unordered_map<uint32_t, Call> calls;
    ucred peer{};
  };

  void OnAcceptable(uint64_t listener_id);
  void AddConn(UniqueFd fd, const ucred& peer);
  void OnFrame(uint64_t conn_id, FrameReader::Event&& ev);
  void Dispatch(uint64_t conn_id, uint32_t stream_id, Request req);
  void OnDeadline(uint64_t conn_id, uint32_t stream_id);
  void OnConnClosed(uint64_t conn_id, const Status& why);
  void SendStatus(Conn& c, uint32_t stream_id, const Status& st);
  void MaybeCloseIdle(uint64_t conn_id);
  void CloseListeners();
  void FinishShutdownIfDone();

  EventLoop& loop_;
  const ServerOptions opts_;

  mutable std::mutex handlers_mu_;
  std::map<std::string, std::map<std::string, AsyncHandler, std::less<>>, std::less<>>
      services_ GUARDED_BY(handlers_mu_);

  // Loop thread only from here on.
  uint64_t next_id_ = 1;
  std::map<uint64_t, Listener> listeners_;
  std::unordered_map<uint64_t, Conn> conns_;
  bool shutting_down_ = false;
  bool closed_ = false;
  EventLoop::TimerId grace_timer_ = 0;
  std::vector<std::function<void()>> shutdown_done_;
};

// Hands `result` to the loop, unless the call was already answered or cancelled.
void Answer(const std::shared_ptr<CallState>& call, Result<std::string> result) {
  if (call->done.exchange(true)) return;
  std::function<void(const Status&)> dropped;
  {
    std::lock_guard lock(call->mu);
    call->answered = true;
    dropped = std::exchange(call->on_cancel, nullptr);  // may hold Responder copies
  }
  dropped = nullptr;  // outside the lock: destroying Responders may re-enter
  auto deliver = [server = call->server, conn = call->conn_id, stream = call->stream_id,
                  r = std::move(result)]() mutable {
    if (auto s = server.lock()) s->Complete(conn, stream, std::move(r));
  };
  if (call->poster.InLoopThread()) {
    deliver();
  } else {
    call->poster.Post(std::move(deliver));
  }
}

CallToken::~CallToken() {
  if (!call->done.load())
    Answer(call, Err(Code::kInternal, "ttrpc: handler finished without answering"));
}

namespace {

std::string StripUnix(const std::string& addr) {
  constexpr std::string_view kPrefix = "unix://";
  return addr.starts_with(kPrefix) ? addr.substr(kPrefix.size()) : addr;
}

Status SocketError(int err, const std::string& what) {
  if (err == EADDRINUSE) return AlreadyExists(what + ": address already in use");
  return StatusFromErrno(err, what);
}

}  // namespace

Status ServerCore::Register(std::string_view service, std::string_view method, AsyncHandler h) {
  if (service.empty() || method.empty()) return InvalidArgument("ttrpc: empty service or method");
  std::lock_guard lock(handlers_mu_);
  auto& methods = services_[std::string(service)];
  if (!methods.emplace(std::string(method), std::move(h)).second) {
    return AlreadyExists("ttrpc: method " + std::string(service) + "/" + std::string(method) +
                         " already registered");
  }
  return Status::Ok();
}

Status ServerCore::AddListener(UniqueFd fd, std::string unlink_path) {
  if (closed_ || shutting_down_) return FailedPrecondition("ttrpc: server closed");
  uint64_t id = next_id_++;
  int raw = fd.get();
  listeners_.emplace(id, Listener{std::move(fd), std::move(unlink_path)});
  std::weak_ptr<ServerCore> weak = weak_from_this();
  Status st = loop_.Watch(raw, EPOLLIN, [weak, id](uint32_t) {
    if (auto s = weak.lock()) s->OnAcceptable(id);
  });
  if (!st.ok()) listeners_.erase(id);
  return st;
}

void ServerCore::OnAcceptable(uint64_t listener_id) {
  auto it = listeners_.find(listener_id);
  if (it == listeners_.end()) return;
  int lfd = it->second.fd.get();
  for (int i = 0; i < 64; ++i) {
    UniqueFd fd(::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (err == EAGAIN) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of fds: stop accepting for a moment rather than spin, as Go's accept backoff.
        spdlog::error("ttrpc: failed accept: {}; backoff 100ms", std::strerror(err));
        (void)loop_.Modify(lfd, 0);
        std::weak_ptr<ServerCore> weak = weak_from_this();
        loop_.AddTimer(Clock::now() + std::chrono::milliseconds(100), [weak, listener_id] {
          auto s = weak.lock();
          if (!s) return;
          auto l = s->listeners_.find(listener_id);
          if (l != s->listeners_.end()) (void)s->loop_.Modify(l->second.fd.get(), EPOLLIN);
        });
        return;
      }
      spdlog::error("ttrpc: failed accept: {}", std::strerror(err));
      return;
    }
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      spdlog::error("ttrpc: refusing connection: SO_PEERCRED: {}", std::strerror(errno));
      continue;
    }
    if (opts_.require_same_user && (peer.uid != ::geteuid() || peer.gid != ::getegid())) {
      spdlog::error(
          "ttrpc: refusing connection after handshake: invalid credentials uid={} "
          "gid={} pid={}",
          peer.uid, peer.gid, peer.pid);
      continue;
    }
    AddConn(std::move(fd), peer);
  }
}

void ServerCore::AddConn(UniqueFd fd, const ucred& peer) {
  uint64_t id = next_id_++;
  std::weak_ptr<ServerCore> weak = weak_from_this();
  FramedConn::Callbacks cb;
  cb.on_frame = [weak, id](FrameReader::Event&& ev) {
    if (auto s = weak.lock()) s->OnFrame(id, std::move(ev));
  };
  cb.on_closed = [weak, id](const Status& why) {
    if (auto s = weak.lock()) s->OnConnClosed(id, why);
  };
  cb.on_drained = [weak, id] {
    if (auto s = weak.lock()) s->MaybeCloseIdle(id);
  };
  auto io =
      std::make_shared<FramedConn>(loop_, std::move(fd), opts_.max_pending_output, std::move(cb));
  if (Status st = io->Start(); !st.ok()) {
    spdlog::error("ttrpc: serving connection: {}", st.ToString());
    return;
  }
  conns_.emplace(id, Conn{std::move(io), {}, peer});
  spdlog::debug("ttrpc: connection {} from pid {}", id, peer.pid);
}

void ServerCore::SendStatus(Conn& c, uint32_t stream_id, const Status& st) {
  c.io->Send(MakeFrame(stream_id, MessageType::kResponse, EncodeResponse(st, {})));
}

void ServerCore::OnFrame(uint64_t conn_id, FrameReader::Event&& ev) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  const FrameHeader& h = ev.header;
  if (ev.oversized) {
    // Discarded by the reader; the client learns why on that stream (ttrpc channel.recv).
    SendStatus(c, h.stream_id, OversizedMessage(h.length));
    return;
  }
  if (h.type == static_cast<uint8_t>(MessageType::kData)) {
    if (!c.calls.contains(h.stream_id)) {
      SendStatus(
          c, h.stream_id,
          InvalidArgument("ttrpc: data frames are not supported (no streams before ttrpc 1.2)"));
    }
    return;
  }
  if (h.type != static_cast<uint8_t>(MessageType::kRequest)) {
    spdlog::debug("ttrpc: ignoring message type {} on stream {}", h.type, h.stream_id);
    return;  // ttrpc ignores unknown types for future compatibility
  }
  auto req = DecodeRequest(ev.payload);
  if (!req) {
    SendStatus(c, h.stream_id,
               InvalidArgument("unmarshal request error: " + req.error().message()));
    return;
  }
  if (h.stream_id % 2 != 1) {
    SendStatus(c, h.stream_id,
               InvalidArgument("StreamID must be odd for client initiated streams"));
    return;
  }
  if (c.calls.contains(h.stream_id)) {
    SendStatus(
        c, h.stream_id,
        InvalidArgument("ttrpc: stream " + std::to_string(h.stream_id) + " is already in use"));
    return;
  }
  Dispatch(conn_id, h.stream_id, std::move(*req));
}

void ServerCore::Dispatch(uint64_t conn_id, uint32_t stream_id, Request req) {
  Conn& c = conns_.at(conn_id);
  AsyncHandler handler;
  Status missing;
  {
    std::lock_guard lock(handlers_mu_);
    auto svc = services_.find(req.service);
    if (svc == services_.end()) {
      missing = Unimplemented("service " + req.service);
    } else if (auto m = svc->second.find(req.method); m == svc->second.end()) {
      missing = Unimplemented("method " + req.method);
    } else {
      handler = m->second;
    }
  }
  if (!missing.ok()) {
    SendStatus(c, stream_id, missing);
    return;
  }
  if (req.timeout_nano < 0) {
    SendStatus(c, stream_id, Status(Code::kDeadlineExceeded, "context deadline exceeded"));
    return;
  }

  Context ctx;
  ctx.service = std::move(req.service);
  ctx.method = std::move(req.method);
  ctx.metadata = std::move(req.metadata);
  ctx.stream_id = stream_id;
  ctx.peer_pid = c.peer.pid;
  ctx.peer_uid = c.peer.uid;
  ctx.peer_gid = c.peer.gid;

  auto state = std::make_shared<CallState>();
  state->poster = loop_.poster();
  state->server = weak_from_this();
  state->conn_id = conn_id;
  state->stream_id = stream_id;
  Call call{state, 0};
  if (req.timeout_nano > 0) {
    // Clamp far deadlines (timeout_nano can be up to ~292 years) to keep time_point in range.
    auto ns = std::min<int64_t>(req.timeout_nano, int64_t{100} * 365 * 24 * 3600 * 1000000000);
    ctx.deadline = Clock::now() + std::chrono::nanoseconds(ns);
    std::weak_ptr<ServerCore> weak = weak_from_this();
    call.timer = loop_.AddTimer(*ctx.deadline, [weak, conn_id, stream_id] {
      if (auto s = weak.lock()) s->OnDeadline(conn_id, stream_id);
    });
  }
  c.calls.emplace(stream_id, std::move(call));
  spdlog::debug("ttrpc: call {}/{} stream={} conn={}", ctx.service, ctx.method, stream_id, conn_id);

  // `c` may be gone once the handler ran (it can answer inline, or close the server).
  auto token = std::make_shared<CallToken>();
  token->call = state;
  Responder responder(std::move(token));
  Responder keep = responder;
  try {
    handler(ctx, std::move(req.payload), std::move(responder));
  } catch (const std::exception& e) {
    keep.Fail(Internal(std::string("ttrpc: handler failed: ") + e.what()));
  } catch (...) {
    keep.Fail(Internal("ttrpc: handler failed"));
  }
}

void ServerCore::Complete(uint64_t conn_id, uint32_t stream_id, Result<std::string> result) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  auto call = c.calls.find(stream_id);
  if (call == c.calls.end()) return;
  loop_.CancelTimer(call->second.timer);
  c.calls.erase(call);
  std::string body =
      result ? EncodeResponse(Status::Ok(), *result) : EncodeResponse(result.error(), {});
  if (body.size() > kMaxMessageSize) {
    spdlog::warn("ttrpc: response of {} bytes on stream {} is too large", body.size(), stream_id);
    body = EncodeResponse(OversizedMessage(body.size()), {});
  }
  c.io->Send(MakeFrame(stream_id, MessageType::kResponse, body));
  MaybeCloseIdle(conn_id);
}

void ServerCore::OnDeadline(uint64_t conn_id, uint32_t stream_id) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  auto call = it->second.calls.find(stream_id);
  if (call == it->second.calls.end()) return;
  auto state = call->second.state;
  Status why(Code::kDeadlineExceeded, "context deadline exceeded");
  if (!state->TryCancel(why)) return;  // the handler's answer is already queued for Complete
  // TryCancel ran the handler's callback, which may have changed anything: look again.
  it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  it->second.calls.erase(stream_id);
  SendStatus(it->second, stream_id, why);
  MaybeCloseIdle(conn_id);
}

void ServerCore::OnConnClosed(uint64_t conn_id, const Status& why) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  spdlog::debug("ttrpc: connection {} closed: {}", conn_id, why.message());
  auto calls = std::move(it->second.calls);
  conns_.erase(it);
  Status canceled(Code::kCanceled, "context canceled");
  for (auto& [id, call] : calls) {
    loop_.CancelTimer(call.timer);
    call.state->TryCancel(canceled);
  }
  FinishShutdownIfDone();
}

void ServerCore::MaybeCloseIdle(uint64_t conn_id) {
  if (!shutting_down_) return;
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  if (it->second.calls.empty() && it->second.io->pending_output() == 0) {
    it->second.io->Close(Unavailable("ttrpc: server shutdown"));
  }
}

void ServerCore::CloseListeners() {
  for (auto& [id, l] : listeners_) {
    loop_.Unwatch(l.fd.get());
    l.fd.reset();
    if (!l.unlink_path.empty() && ::unlink(l.unlink_path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("ttrpc: remove socket {}: {}", l.unlink_path, std::strerror(errno));
    }
  }
  listeners_.clear();
}

void ServerCore::Shutdown(std::chrono::nanoseconds grace, std::function<void()> done) {
  if (done) shutdown_done_.push_back(std::move(done));
  if (closed_) {
    FinishShutdownIfDone();
    return;
  }
  if (shutting_down_) return;
  shutting_down_ = true;
  CloseListeners();
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : conns_) ids.push_back(id);
  for (uint64_t id : ids) MaybeCloseIdle(id);
  std::weak_ptr<ServerCore> weak = weak_from_this();
  grace_timer_ = loop_.AddTimer(Clock::now() + grace, [weak] {
    if (auto s = weak.lock()) {
      s->grace_timer_ = 0;
      if (!s->conns_.empty()) {
        spdlog::warn("ttrpc: shutdown grace period over; closing {} connections", s->conns_.size());
      }
      s->Close();
    }
  });
  FinishShutdownIfDone();
}

void ServerCore::Close() {
  shutting_down_ = true;
  closed_ = true;
  CloseListeners();
  auto conns = std::move(conns_);
  conns_.clear();
  Status canceled(Code::kCanceled, "context canceled");
  for (auto& [id, c] : conns) {
    c.io->Close(Unavailable("ttrpc: server closed"));
    for (auto& [sid, call] : c.calls) {
      loop_.CancelTimer(call.timer);
      call.state->TryCancel(canceled);
    }
  }
  FinishShutdownIfDone();
}

void ServerCore::FinishShutdownIfDone() {
  if (!shutting_down_ || !conns_.empty()) return;
  if (grace_timer_ != 0) {
    loop_.CancelTimer(grace_timer_);
    grace_timer_ = 0;
  }
  auto done = std::move(shutdown_done_);
  shutdown_done_.clear();
  for (auto& fn : done) fn();
}

}  // namespace internal

// ---- Responder ----

void Responder::Reply(std::string payload) const {
  internal::Answer(token_->call, std::move(payload));
}

void Responder::Fail(Status st) const {
  if (st.ok()) {
    Reply("");
    return;
  }
  internal::Answer(token_->call, std::unexpected(std::move(st)));
}

void Responder::Send(Result<std::string> result) const {
  if (!result && result.error().ok()) result = std::string();
  internal::Answer(token_->call, std::move(result));
}

bool Responder::done() const { return token_->call->done.load(); }

void Responder::OnCancel(std::function<void(const Status&)> cb) const {
  auto& call = *token_->call;
  Status why;
  {
    std::lock_guard lock(call.mu);
    if (call.answered) return;  // an answered call is never cancelled
    if (!call.cancelled) {
      // Also right when TryCancel has flipped `done` but not yet taken the lock: it will
      // find the callback there.
      call.on_cancel = std::move(cb);
      return;
    }
    why = *call.cancelled;
  }
  call.poster.Post([cb = std::move(cb), why] { cb(why); });
}

// ---- Server ----

Server::Server(EventLoop& loop, ServerOptions opts)
    : core_(std::make_shared<internal::ServerCore>(loop, opts)) {}

Server::~Server() { Close(); }

Status Server::Register(std::string_view service, std::string_view method, Handler handler) {
  if (!handler) return InvalidArgument("ttrpc: empty handler");
  return core_->Register(service, method,
                         [h = std::move(handler)](const Context& ctx, std::string payload,
                                                  Responder r) { r.Send(h(ctx, payload)); });
}

Status Server::RegisterAsync(std::string_view service, std::string_view method,
                             AsyncHandler handler) {
  if (!handler) return InvalidArgument("ttrpc: empty handler");
  return core_->Register(service, method, std::move(handler));
}

Status Server::Listen(const std::string& address) {
  std::string path = internal::StripUnix(address);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path[0] == '@' || path[0] == '\0') {
    // Abstract sockets are reachable from any process in the network namespace, whatever its
    // uid: containerd-shim's CVE-2020-15257. Path sockets only.
    return InvalidArgument("ttrpc: listen " + address + ": only path sockets are allowed");
  }
  if (path.size() >= sizeof sa.sun_path) {
    return InvalidArgument("ttrpc: socket path too long: " + path);
  }
  std::copy(path.begin(), path.end(), sa.sun_path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "socket");
  // The mode of the socket inode is taken at bind time (minus the umask): restricting it
  // first means the path never exists with wider permissions, not even briefly.
  if (::fchmod(fd.get(), 0600) != 0) return StatusFromErrno(errno, "fchmod socket " + path);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return internal::SocketError(errno, "listen unix " + path);
  }
  auto cleanup = [&] { ::unlink(path.c_str()); };
  if (::chmod(path.c_str(), 0600) != 0) {
    Status st = StatusFromErrno(errno, "chmod " + path);
    cleanup();
    return st;
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    Status st = StatusFromErrno(errno, "listen " + path);
    cleanup();
    return st;
  }
  Status st;
  RunOnLoop(core_->loop(), [&] { st = core_->AddListener(std::move(fd), path); });
  if (!st.ok()) cleanup();
  return st;
}

Status Server::Serve(UniqueFd listener) {
  int fd = listener.get();
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) {
    return StatusFromErrno(errno, "ttrpc: serve fd " + std::to_string(fd));
  }
  sockaddr_un sa{};
  socklen_t salen = sizeof sa;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &salen) != 0) {
    return StatusFromErrno(errno, "ttrpc: getsockname");
  }
  if (!accepting || sa.sun_family != AF_UNIX) {
    return InvalidArgument("ttrpc: fd " + std::to_string(fd) + " is not a listening unix socket");
  }
  if (salen <= offsetof(sockaddr_un, sun_path) || sa.sun_path[0] == '\0') {
    return InvalidArgument("ttrpc: fd " + std::to_string(fd) +
                           " is an abstract or unnamed socket; only path sockets are allowed");
  }
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    return StatusFromErrno(errno, "ttrpc: fcntl listener");
  }
  Status st;
  RunOnLoop(core_->loop(), [&] { st = core_->AddListener(std::move(listener), ""); });
  return st;
}

void Server::Shutdown(std::chrono::nanoseconds grace, std::function<void()> done) {
  auto core = core_;
  RunOnLoop(core->loop(), [&] { core->Shutdown(grace, std::move(done)); });
}

void Server::Close() {
  auto core = core_;
  RunOnLoop(core->loop(), [&] { core->Close(); });
}

size_t Server::ConnectionCountForTest() const {
  size_t n = 0;
  RunOnLoop(core_->loop(), [&] { n = core_->connection_count(); });
  return n;
}

}  // namespace berth::ttrpc
