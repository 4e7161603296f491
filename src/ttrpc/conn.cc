#include "ttrpc/conn.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace berth::ttrpc::internal {

namespace {
constexpr size_t kReadChunk = 64 << 10;
constexpr int kReadsPerWakeup = 16;  // then let other connections have a turn
constexpr int kMaxIov = 64;
}  // namespace

FramedConn::FramedConn(EventLoop& loop, UniqueFd fd, size_t pause_reads_above, Callbacks cb)
    : loop_(loop), fd_(std::move(fd)), pause_above_(pause_reads_above), cb_(std::move(cb)) {}

FramedConn::~FramedConn() {
  if (fd_.valid()) loop_.Unwatch(fd_.get());
}

Status FramedConn::Start() {
  interest_ = EPOLLIN;
  std::weak_ptr<FramedConn> weak = weak_from_this();
  return loop_.Watch(fd_.get(), interest_, [weak](uint32_t events) {
    if (auto self = weak.lock()) self->OnEvents(events);
  });
}

void FramedConn::OnEvents(uint32_t events) {
  auto self = shared_from_this();  // callbacks may drop the owner's reference
  if (events & EPOLLOUT) Flush();
  if (closed()) return;
  if ((events & EPOLLIN) && (interest_ & EPOLLIN)) {
    ReadSome();
  } else if (events & (EPOLLHUP | EPOLLERR)) {
    // Not reading (paused) or nothing to read: the peer is gone and nothing more can arrive.
    Close(Unavailable("ttrpc: connection closed"));
  }
}

void FramedConn::DrainBacklog() {
  while (!backlog_.empty() && !paused_ && !closed()) {
    FrameReader::Event ev = std::move(backlog_.front());
    backlog_.pop_front();
    cb_.on_frame(std::move(ev));  // may pause us (via Send) or close us
  }
}

void FramedConn::ReadSome() {
  DrainBacklog();
  char buf[kReadChunk];
  std::vector<FrameReader::Event> frames;
  for (int i = 0; i < kReadsPerWakeup && !closed() && !paused_ && backlog_.empty(); ++i) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n == 0) {
      Close(Unavailable(reader_.mid_frame() ? "ttrpc: connection closed mid-frame"
                                            : "ttrpc: connection closed"));
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      Close(Unavailable(std::string("ttrpc: read: ") + std::strerror(errno)));
      return;
    }
    frames.clear();
    reader_.Feed(std::string_view(buf, static_cast<size_t>(n)), &frames);
    for (auto& f : frames) backlog_.push_back(std::move(f));
    DrainBacklog();
    if (static_cast<size_t>(n) < sizeof buf) return;  // drained for now
  }
}

void FramedConn::Send(std::string frame) {
  if (closed() || frame.empty()) return;
  out_bytes_ += frame.size();
  out_.push_back(std::move(frame));
  if (!(interest_ & EPOLLOUT)) Flush();  // else wait for the socket to take more
  if (!closed()) UpdateInterest();
}

void FramedConn::Flush() {
  while (!out_.empty() && !closed()) {
    iovec iov[kMaxIov];
    int n_iov = 0;
    size_t skip = out_head_;
    for (auto it = out_.begin(); it != out_.end() && n_iov < kMaxIov; ++it) {
      iov[n_iov].iov_base = it->data() + skip;
      iov[n_iov].iov_len = it->size() - skip;
      skip = 0;
      ++n_iov;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n_iov);
    // MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE for the process.
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      Close(Unavailable(std::string("ttrpc: write: ") + std::strerror(errno)));
      return;
    }
    auto left = static_cast<size_t>(n);
    out_bytes_ -= left;
    while (left > 0) {
      size_t rest = out_.front().size() - out_head_;
      if (left < rest) {
        out_head_ += left;
        break;
      }
      left -= rest;
      out_.pop_front();
      out_head_ = 0;
    }
  }
  if (closed()) return;
  UpdateInterest();
  if (out_.empty() && cb_.on_drained) cb_.on_drained();
}

void FramedConn::UpdateInterest() {
  if (pause_above_ > 0) {
    if (!paused_ && out_bytes_ > pause_above_) {
      paused_ = true;
      spdlog::debug("ttrpc: fd {} peer is not reading; pausing reads ({} bytes queued)", fd_.get(),
                    out_bytes_);
    } else if (paused_ && out_bytes_ <= pause_above_ / 2) {
      paused_ = false;
      if (!backlog_.empty()) {
        // Hand out the frames held back; not from here, which may be inside a Send.
        std::weak_ptr<FramedConn> weak = weak_from_this();
        loop_.Post([weak] {
          if (auto self = weak.lock()) {
            self->DrainBacklog();
            if (!self->closed()) self->UpdateInterest();
          }
        });
      }
    }
  }
  uint32_t want = (paused_ ? 0u : uint32_t{EPOLLIN}) | (out_.empty() ? 0u : uint32_t{EPOLLOUT});
  if (want == interest_) return;
  interest_ = want;
  if (Status s = loop_.Modify(fd_.get(), want); !s.ok()) {
    Close(Internal("ttrpc: " + s.message()));
  }
}

void FramedConn::Close(const Status& why) {
  if (closed()) return;
  loop_.Unwatch(fd_.get());
  fd_.reset();
  out_.clear();
  out_bytes_ = 0;
  backlog_.clear();
  auto self = shared_from_this();
  loop_.Post([self, why] {
    if (self->cb_.on_closed) self->cb_.on_closed(why);
    self->cb_ = {};  // drop owner references captured by the callbacks
  });
}

}  // namespace berth::ttrpc::internal
