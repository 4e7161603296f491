#include "ttrpc/client.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <unordered_map>

#include "common/fs.h"
#include "common/unix_socket.h"
#include "ttrpc/conn.h"

namespace berth::ttrpc {

namespace internal {

using DoneFn = std::function<void(Result<std::string>)>;

Status Closed() { return Unavailable("ttrpc: closed"); }

class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  ClientCore(EventLoop& loop, ClientOptions opts) : loop_(loop), opts_(std::move(opts)) {}

  // Loop thread from here on.
  Status Start(UniqueFd fd);
  // `frame` has kHeaderSize bytes reserved in front of the encoded Request.
  void StartCall(std::string frame, std::optional<Clock::time_point> deadline, DoneFn done);
  void Close();

  std::atomic<bool> closed{false};  // read from any thread

 private:
  struct Pending {
    DoneFn done;
    EventLoop::TimerId timer = 0;
  };

  void OnFrame(FrameReader::Event&& ev);
  void OnClosed(const Status& why);
  void OnDeadline(uint32_t stream_id);

  EventLoop& loop_;
  ClientOptions opts_;
  std::shared_ptr<FramedConn> io_;
  std::unordered_map<uint32_t, Pending> pending_;
  uint64_t next_id_ = 1;  // 64-bit so running out of 32-bit ids is detectable
  bool ended_ = false;
};

Status ClientCore::Start(UniqueFd fd) {
  std::weak_ptr<ClientCore> weak = weak_from_this();
  FramedConn::Callbacks cb;
  cb.on_frame = [weak](FrameReader::Event&& ev) {
    if (auto c = weak.lock()) c->OnFrame(std::move(ev));
  };
  cb.on_closed = [weak](const Status& why) {
    if (auto c = weak.lock()) c->OnClosed(why);
  };
  io_ = std::make_shared<FramedConn>(loop_, std::move(fd), 0, std::move(cb));
  return io_->Start();
}

void ClientCore::StartCall(std::string frame, std::optional<Clock::time_point> deadline,
                           DoneFn done) {
  if (ended_ || io_->closed()) {
    done(std::unexpected(Closed()));
    return;
  }
  if (next_id_ > UINT32_MAX) {
    done(Err(Code::kUnavailable, "ttrpc: stream ids exhausted; reconnect"));
    return;
  }
  auto id = static_cast<uint32_t>(next_id_);
  next_id_ += 2;  // client-initiated streams are odd
  EncodeHeader({static_cast<uint32_t>(frame.size() - kHeaderSize), id,
                static_cast<uint8_t>(MessageType::kRequest), 0},
               frame.data());
  Pending p{std::move(done), 0};
  if (deadline) {
    std::weak_ptr<ClientCore> weak = weak_from_this();
    p.timer = loop_.AddTimer(*deadline, [weak, id] {
      if (auto c = weak.lock()) c->OnDeadline(id);
    });
  }
  pending_.emplace(id, std::move(p));
  io_->Send(std::move(frame));
}

void ClientCore::OnFrame(FrameReader::Event&& ev) {
  auto it = pending_.find(ev.header.stream_id);
  if (it == pending_.end()) {
    // Late answers to calls that timed out land here too.
    spdlog::debug("ttrpc: received message for unknown stream {}", ev.header.stream_id);
    return;
  }
  Pending p = std::move(it->second);
  pending_.erase(it);
  loop_.CancelTimer(p.timer);
  if (ev.oversized) {
    p.done(std::unexpected(OversizedMessage(ev.header.length)));
    return;
  }
  if (ev.header.type != static_cast<uint8_t>(MessageType::kResponse)) {
    p.done(Err(Code::kInternal,
               "ttrpc: unknown message type " + std::to_string(ev.header.type) + " received"));
    return;
  }
  auto resp = DecodeResponse(ev.payload);
  if (!resp) {
    p.done(Err(Code::kInternal, "ttrpc: unmarshal response: " + resp.error().message()));
    return;
  }
  if (resp->status) {
    if (Status st = StatusFromRpc(*resp->status); !st.ok()) {
      p.done(std::unexpected(std::move(st)));
      return;
    }
  }
  p.done(std::move(resp->payload));
}

void ClientCore::OnDeadline(uint32_t stream_id) {
  auto it = pending_.find(stream_id);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  p.done(Err(Code::kDeadlineExceeded, "context deadline exceeded"));
}

void ClientCore::OnClosed(const Status& why) {
  if (ended_) return;
  ended_ = true;
  closed.store(true);
  spdlog::debug("ttrpc: client connection closed: {}", why.message());
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    loop_.CancelTimer(p.timer);
    p.done(std::unexpected(Closed()));
  }
  if (opts_.on_close) {
    auto cb = std::move(opts_.on_close);
    opts_.on_close = nullptr;
    cb(why);
  }
}

void ClientCore::Close() {
  closed.store(true);
  if (io_) io_->Close(Closed());
  // Fail the calls now rather than when the posted close notice runs: after Close returns
  // nothing may still be waiting on this connection.
  OnClosed(Closed());
}

namespace {

Result<UniqueFd> Dial(std::string_view address, std::chrono::milliseconds timeout) {
  std::string path(address);
  if (path.starts_with("unix://")) path.erase(0, 7);
  if (path.empty() || path[0] == '@' || path[0] == '\0') {
    return Err(Code::kInvalidArgument,
               "ttrpc: dial " + std::string(address) + ": only path sockets are allowed");
  }
  // Shim sockets live under the daemon's state dir, whose path may not fit in sun_path.
  auto ua = MakeUnixAddress(path);
  if (!ua) return Err(Code::kInvalidArgument, "ttrpc: " + ua.error().message());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "socket"));
  // A blocking AF_UNIX connect waits on a full backlog for at most SO_SNDTIMEO.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc;
  do {
    rc = ::connect(fd.get(), ua->addr(), ua->len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EISCONN) {
    std::string why =
        errno == EAGAIN || errno == EINPROGRESS ? "i/o timeout" : std::strerror(errno);
    return Err(Code::kUnavailable, "dial unix " + path + ": connect: " + why);
  }
  tv = {};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
    return std::unexpected(StatusFromErrno(errno, "fcntl"));
  }
  return fd;
}

}  // namespace
}  // namespace internal

Result<std::unique_ptr<Client>> Client::Connect(std::string_view address, ClientOptions opts) {
  ASSIGN_OR_RETURN(auto own, LoopThread::Start());
  EventLoop& loop = own->loop();
  return ConnectOn(std::move(own), loop, address, std::move(opts));
}

Result<std::unique_ptr<Client>> Client::Connect(EventLoop& loop, std::string_view address,
                                                ClientOptions opts) {
  return ConnectOn(nullptr, loop, address, std::move(opts));
}

Result<std::unique_ptr<Client>> Client::ConnectOn(std::unique_ptr<LoopThread> own, EventLoop& loop,
                                                  std::string_view address, ClientOptions opts) {
  ASSIGN_OR_RETURN(UniqueFd fd, internal::Dial(address, opts.connect_timeout));
  auto core = std::make_shared<internal::ClientCore>(loop, std::move(opts));
  Status st;
  RunOnLoop(loop, [&] { st = core->Start(std::move(fd)); });
  if (!st.ok()) return std::unexpected(st);
  return std::unique_ptr<Client>(new Client(std::move(own), loop, std::move(core)));
}

Client::Client(std::unique_ptr<LoopThread> own, EventLoop& loop,
               std::shared_ptr<internal::ClientCore> core)
    : own_loop_(std::move(own)), loop_(loop), core_(std::move(core)) {}

Client::~Client() {
  Close();
  own_loop_.reset();  // joins our loop thread before the core goes
}

void Client::Close() {
  auto core = core_;
  RunOnLoop(loop_, [&] { core->Close(); });
}

bool Client::closed() const { return core_->closed.load(); }

void Client::CallAsync(std::string_view service, std::string_view method, std::string payload,
                       const CallOptions& opts, std::function<void(Result<std::string>)> done) {
  if (core_->closed.load()) {
    done(std::unexpected(internal::Closed()));
    return;
  }
  Request req;
  req.service = std::string(service);
  req.method = std::string(method);
  req.payload = std::move(payload);
  req.metadata = opts.metadata;
  std::optional<Clock::time_point> deadline;
  if (opts.timeout) {
    if (opts.timeout->count() <= 0) {
      done(Err(Code::kDeadlineExceeded, "context deadline exceeded"));
      return;
    }
    req.timeout_nano = opts.timeout->count();
    deadline = Clock::now() + *opts.timeout;
  }
  std::string body = EncodeRequest(req);
  if (body.size() > kMaxMessageSize) {
    done(std::unexpected(OversizedMessage(body.size())));
    return;
  }
  std::string frame;
  frame.reserve(kHeaderSize + body.size());
  frame.append(kHeaderSize, '\0');
  frame.append(body);
  body = {};

  if (loop_.InLoopThread()) {
    core_->StartCall(std::move(frame), deadline, std::move(done));
    return;
  }
  // Shared so `done` is still ours to call if the loop refuses the post.
  auto d = std::make_shared<internal::DoneFn>(std::move(done));
  bool posted = loop_.Post([core = core_, frame = std::move(frame), deadline, d]() mutable {
    core->StartCall(std::move(frame), deadline, std::move(*d));
  });
  if (!posted) (*d)(std::unexpected(internal::Closed()));
}

Result<std::string> Client::Call(std::string_view service, std::string_view method,
                                 std::string payload, const CallOptions& opts) {
  if (loop_.InLoopThread()) {
    return Err(Code::kFailedPrecondition,
               "ttrpc: synchronous Call on the client's loop thread would deadlock; use CallAsync");
  }
  auto promise = std::make_shared<std::promise<Result<std::string>>>();
  auto future = promise->get_future();
  CallAsync(service, method, std::move(payload), opts,
            [promise](Result<std::string> r) { promise->set_value(std::move(r)); });
  try {
    return future.get();
  } catch (const std::future_error&) {
    // The loop went away with the call still queued.
    return std::unexpected(internal::Closed());
  }
}

Status Client::Call(std::string_view service, std::string_view method,
                    const google::protobuf::MessageLite& req, google::protobuf::MessageLite* resp,
                    const CallOptions& opts) {
  std::string payload;
  if (!req.SerializeToString(&payload)) return Internal("ttrpc: error marshaling request");
  ASSIGN_OR_RETURN(std::string out, Call(service, method, std::move(payload), opts));
  if (resp != nullptr && !resp->ParseFromString(out)) {
    return Internal("ttrpc: error unmarshalling response payload");
  }
  return Status::Ok();
}

}  // namespace berth::ttrpc
