// Internal: one non-blocking Unix stream socket on an EventLoop, carrying ttrpc frames. Shared
// by the server (one per accepted connection) and the client. Loop thread only.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/fs.h"
#include "common/status.h"
#include "ttrpc/event_loop.h"
#include "ttrpc/protocol.h"

namespace berth::ttrpc::internal {

class FramedConn : public std::enable_shared_from_this<FramedConn> {
 public:
  struct Callbacks {
    // A complete (or oversized, discarded) frame arrived.
    std::function<void(FrameReader::Event&&)> on_frame;
    // The connection ended (peer closed, I/O error, or Close). Runs once, posted to the loop
    // after the fd is closed, so it never runs inside a Send or Close call.
    std::function<void(const Status&)> on_closed;
    // The output buffer has just been flushed completely. May call Close, nothing else.
    std::function<void()> on_drained;
  };

  // `pause_reads_above`: stop reading new frames while more output than this is queued (a
  // peer that sends requests but never reads the answers); 0 = always read.
  FramedConn(EventLoop& loop, UniqueFd fd, size_t pause_reads_above, Callbacks cb);
  ~FramedConn();

  Status Start();
  // Queues a complete frame and writes what the socket takes now. Dropped when closed.
  void Send(std::string frame);
  // Closes the fd now; on_closed(why) follows. Idempotent.
  void Close(const Status& why);

  bool closed() const { return !fd_.valid(); }
  size_t pending_output() const { return out_bytes_; }
  int fd() const { return fd_.get(); }

 private:
  void OnEvents(uint32_t events);
  void ReadSome();
  void DrainBacklog();
  void Flush();
  void UpdateInterest();

  EventLoop& loop_;
  UniqueFd fd_;
  size_t pause_above_;
  Callbacks cb_;
  FrameReader reader_;
  // Frames read but not yet handed out because reading is paused; at most one read's worth.
  std::deque<FrameReader::Event> backlog_;
  std::deque<std::string> out_;
  size_t out_head_ = 0;   // bytes of out_.front() already written
  size_t out_bytes_ = 0;  // unwritten bytes in out_
  bool paused_ = false;
  uint32_t interest_ = 0;
};

}  // namespace berth::ttrpc::internal
