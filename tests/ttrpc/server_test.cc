// Server behaviour, driven by our Client for the normal paths and by hand-made frames
// (RawConn) for hostile ones. Every robustness test ends by checking that the server still
// serves a fresh connection.
#include "ttrpc/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <google/protobuf/wrappers.pb.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "test_util.h"
#include "ttrpc/client.h"

namespace berth::ttrpc {
namespace {

using testing::Frame;
using testing::RawConn;
using testing::TempDir;
using testing::WaitFor;
using namespace std::chrono_literals;

constexpr std::string_view kEcho = "test.Echo";
constexpr std::string_view kAsync = "test.Async";

Request MakeReq(std::string_view service, std::string_view method, std::string payload = "") {
  Request r;
  r.service = std::string(service);
  r.method = std::string(method);
  r.payload = std::move(payload);
  return r;
}

class ServerTest : public ::testing::Test {
 protected:
  struct Held {
    Context ctx;
    std::string payload;
    Responder responder;
  };

  void SetUp() override {
    auto lt = LoopThread::Start();
    ASSERT_TRUE(lt.has_value()) << lt.error().ToString();
    loop_ = std::move(*lt);
    server_ = std::make_unique<Server>(loop_->loop(), ServerOptions{});
    RegisterHandlers(*server_);
    sock_ = dir_.Join("s.sock");
    Status st = server_->Listen(sock_);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  void TearDown() override {
    server_.reset();
    loop_.reset();
  }

  void RegisterHandlers(Server& s) {
    ASSERT_TRUE(s.Register(kEcho, "Echo",
                           [this](const Context&, std::string_view p) -> Result<std::string> {
                             ++echo_calls_;
                             return std::string(p);
                           })
                    .ok());
    ASSERT_TRUE(
        s.Register(kEcho, "Fail", [](const Context&, std::string_view) -> Result<std::string> {
           return Err(Code::kNotFound, "thing not found");
         }).ok());
    ASSERT_TRUE(s.Register(kEcho, "Metadata",
                           [](const Context& ctx, std::string_view) -> Result<std::string> {
                             std::string out;
                             for (const auto& [k, v] : ctx.metadata.entries())
                               out += k + "=" + v + ";";
                             return out;
                           })
                    .ok());
    ASSERT_TRUE(s.Register(kEcho, "Deadline",
                           [](const Context& ctx, std::string_view) -> Result<std::string> {
                             if (!ctx.deadline) return std::string("none");
                             auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 *ctx.deadline - Clock::now());
                             return std::to_string(left.count());
                           })
                    .ok());
    ASSERT_TRUE(
        s.Register(kEcho, "Big", [this](const Context&, std::string_view p) -> Result<std::string> {
           ++big_calls_;
           return std::string(std::stoul(std::string(p)), 'b');
         }).ok());
    ASSERT_TRUE(
        s.Register(kEcho, "Throw", [](const Context&, std::string_view) -> Result<std::string> {
           throw std::runtime_error("boom");
         }).ok());
    ASSERT_TRUE(s.RegisterAsync(kEcho, "Drop", [](const Context&, std::string, Responder) {}).ok());
    ASSERT_TRUE(
        s.RegisterAsync(kAsync, "Hold", [this](const Context& ctx, std::string p, Responder r) {
           r.OnCancel([this](const Status& why) {
             std::lock_guard lock(mu_);
             cancels_.push_back(why);
             cv_.notify_all();
           });
           std::lock_guard lock(mu_);
           held_.push_back({ctx, std::move(p), std::move(r)});
           cv_.notify_all();
         }).ok());
  }

  std::unique_ptr<Client> Dial(ClientOptions opts = {}) {
    auto c = Client::Connect(sock_, std::move(opts));
    EXPECT_TRUE(c.has_value()) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }

  bool WaitHeld(size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return held_.size() >= n; });
  }
  bool WaitCancels(size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return cancels_.size() >= n; });
  }
  std::vector<Held> TakeHeld() {
    std::lock_guard lock(mu_);
    return std::exchange(held_, {});
  }

  // The server still answers a new connection.
  void ExpectServing() {
    auto c = Dial();
    ASSERT_NE(c, nullptr);
    auto r = c->Call(kEcho, "Echo", "still here", {.timeout = 5s});
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(*r, "still here");
  }

  TempDir dir_;
  std::string sock_;
  std::unique_ptr<LoopThread> loop_;
  std::unique_ptr<Server> server_;

  std::atomic<int> echo_calls_{0};
  std::atomic<int> big_calls_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Held> held_;       // GUARDED_BY(mu_)
  std::vector<Status> cancels_;  // GUARDED_BY(mu_)
};

TEST_F(ServerTest, UnaryEcho) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kEcho, "Echo", "hello");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(*r, "hello");
  r = c->Call(kEcho, "Echo", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, "");
}

TEST_F(ServerTest, UnknownServiceAndMethodAreUnimplementedWithTtrpcWording) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call("nope.Service", "Echo", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kUnimplemented, "service nope.Service"));
  r = c->Call(kEcho, "Nope", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kUnimplemented, "method Nope"));
}

TEST_F(ServerTest, HandlerStatusTravelsAsGrpcCode) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kEcho, "Fail", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kNotFound, "thing not found"));
  // On the wire: code 5 in google.rpc.Status, no payload.
  RawConn raw(sock_);
  ASSERT_TRUE(raw.SendRequest(1, MakeReq(kEcho, "Fail")));
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(resp->status->code, 5);
  EXPECT_EQ(resp->status->message, "thing not found");
  EXPECT_EQ(resp->payload, "");
}

TEST_F(ServerTest, MetadataRoundTrip) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  CallOptions opts;
  opts.metadata.Add("containerd-namespace-ttrpc", "default");
  opts.metadata.Add("x-multi", "1");
  opts.metadata.Add("x-multi", "2");
  auto r = c->Call(kEcho, "Metadata", "", opts);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(*r, "containerd-namespace-ttrpc=default;x-multi=1;x-multi=2;");
}

TEST_F(ServerTest, TimeoutBecomesServerDeadline) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kEcho, "Deadline", "", {.timeout = 5s});
  ASSERT_TRUE(r.has_value());
  int left = std::stoi(*r);
  EXPECT_GT(left, 4000);
  EXPECT_LE(left, 5000);
  r = c->Call(kEcho, "Deadline", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, "none");
}

TEST_F(ServerTest, DeadlineExceededAnswersAndCancelsHandler) {
  // Raw, so we see the server's own answer rather than the client's local deadline.
  RawConn raw(sock_);
  Request req = MakeReq(kAsync, "Hold", "slow");
  req.timeout_nano = 100'000'000;
  auto start = Clock::now();
  ASSERT_TRUE(raw.SendRequest(1, req));
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_GE(Clock::now() - start, 100ms);
  EXPECT_EQ(StatusFromRpc(*resp->status),
            Status(Code::kDeadlineExceeded, "context deadline exceeded"));
  ASSERT_TRUE(WaitCancels(1));
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(cancels_[0].code(), Code::kDeadlineExceeded);
  }
  // The handler's late answer goes nowhere; the connection stays fine.
  auto held = TakeHeld();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_TRUE(held[0].responder.done());
  held[0].responder.Reply("too late");
  ASSERT_TRUE(raw.SendRequest(3, MakeReq(kEcho, "Echo", "after")));
  resp = raw.ReadResponse(3);
  ASSERT_TRUE(resp);
  EXPECT_FALSE(resp->status);
  EXPECT_EQ(resp->payload, "after");

  // Through the client: its own deadline fires, the server's fires too.
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kAsync, "Hold", "", {.timeout = 50ms});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded);
  ASSERT_TRUE(WaitCancels(2));
}

TEST_F(ServerTest, ExpiredTimeoutIsNotDispatched) {
  RawConn raw(sock_);
  Request req = MakeReq(kEcho, "Echo", "x");
  req.timeout_nano = -1;
  ASSERT_TRUE(raw.SendRequest(1, req));
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(resp->status->code, static_cast<int>(Code::kDeadlineExceeded));
  EXPECT_EQ(echo_calls_.load(), 0);
}

TEST_F(ServerTest, HundredsInFlightCompletedOutOfOrder) {
  constexpr int kThreads = 8, kPerThread = 50, kTotal = kThreads * kPerThread;
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      std::vector<std::thread> inner;
      for (int i = 0; i < kPerThread; ++i) {
        inner.emplace_back([&, t, i] {
          std::string p = std::to_string(t) + ":" + std::to_string(i);
          auto r = c->Call(kAsync, "Hold", p, {.timeout = 30s});
          if (r.has_value() && *r == "re:" + p) ++ok;
        });
      }
      for (auto& th : inner) th.join();
    });
  }
  ASSERT_TRUE(WaitHeld(kTotal, 30s));
  auto held = TakeHeld();
  ASSERT_EQ(held.size(), static_cast<size_t>(kTotal));
  std::set<uint32_t> ids;
  for (const auto& h : held) ids.insert(h.ctx.stream_id);
  EXPECT_EQ(ids.size(), held.size());
  EXPECT_TRUE(std::all_of(ids.begin(), ids.end(), [](uint32_t id) { return id % 2 == 1; }));
  std::shuffle(held.begin(), held.end(), std::mt19937(42));
  // Answer from two threads other than the loop's.
  std::thread a([&] {
    for (size_t i = 0; i < held.size(); i += 2) held[i].responder.Reply("re:" + held[i].payload);
  });
  std::thread b([&] {
    for (size_t i = 1; i < held.size(); i += 2) held[i].responder.Reply("re:" + held[i].payload);
  });
  a.join();
  b.join();
  for (auto& th : callers) th.join();
  EXPECT_EQ(ok.load(), kTotal);
}

TEST_F(ServerTest, AsyncClientCallsFromTheLoopThread) {
  // The daemon side chains calls from callbacks; sync Call there is refused, CallAsync works.
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  std::promise<Status> inner_sync;
  std::promise<std::string> chained;
  c->CallAsync(kEcho, "Echo", "one", {}, [&](Result<std::string> r) {
    auto sync = c->Call(kEcho, "Echo", "no");
    inner_sync.set_value(sync.has_value() ? Status::Ok() : sync.error());
    c->CallAsync(kEcho, "Echo", *r + "+two", {},
                 [&](Result<std::string> r2) { chained.set_value(r2.value_or("error")); });
  });
  EXPECT_EQ(inner_sync.get_future().get().code(), Code::kFailedPrecondition);
  EXPECT_EQ(chained.get_future().get(), "one+two");
}

TEST_F(ServerTest, HandlerThatThrowsOrForgetsFailsInternal) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kEcho, "Throw", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kInternal, "ttrpc: handler failed: boom"));
  r = c->Call(kEcho, "Drop", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kInternal, "ttrpc: handler finished without answering"));
}

TEST_F(ServerTest, OversizedRequestFrameIsDiscardedAndAnsweredOnItsStream) {
  RawConn raw(sock_);
  char h[kHeaderSize];
  EncodeHeader({kMaxMessageSize + 1, 1, 1, 0}, h);
  ASSERT_TRUE(raw.Write(std::string_view(h, kHeaderSize)));
  ASSERT_TRUE(raw.Write(std::string(kMaxMessageSize + 1, 'x')));
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(StatusFromRpc(*resp->status),
            Status(Code::kResourceExhausted,
                   "message length 4194305 exceed maximum message size of 4194304"));
  // Same connection, next request: still served (ttrpc keeps the connection).
  ASSERT_TRUE(raw.SendRequest(3, MakeReq(kEcho, "Echo", "ok")));
  resp = raw.ReadResponse(3);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->payload, "ok");
}

TEST_F(ServerTest, OversizedRequestIsRefusedByTheClientBeforeSending) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kEcho, "Echo", std::string(kMaxMessageSize, 'p'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kResourceExhausted);
  EXPECT_TRUE(r.error().message().starts_with("message length 41943"));
  EXPECT_EQ(echo_calls_.load(), 0);
  // Just under the limit goes through.
  r = c->Call(kEcho, "Echo", std::string(kMaxMessageSize - 64, 'p'));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->size(), kMaxMessageSize - 64);
}

TEST_F(ServerTest, OversizedResponseBecomesResourceExhausted) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kEcho, "Big", std::to_string(5 << 20));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kResourceExhausted);
  r = c->Call(kEcho, "Echo", "after");
  ASSERT_TRUE(r.has_value());
}

TEST_F(ServerTest, TruncatedFrameThenCloseIsCleanedUp) {
  auto base = server_->ConnectionCountForTest();
  {
    RawConn raw(sock_);
    std::string frame =
        MakeFrame(1, MessageType::kRequest, EncodeRequest(MakeReq(kEcho, "Echo", "x")));
    ASSERT_TRUE(raw.Write(std::string_view(frame).substr(0, frame.size() - 3)));
    ASSERT_TRUE(WaitFor([&] { return server_->ConnectionCountForTest() == base + 1; }));
    raw.Close();  // mid-frame
  }
  EXPECT_TRUE(WaitFor([&] { return server_->ConnectionCountForTest() == base; }));
  {
    RawConn raw(sock_);
    ASSERT_TRUE(raw.Write(std::string_view("\x00\x00", 2)));  // mid-header
  }
  EXPECT_TRUE(WaitFor([&] { return server_->ConnectionCountForTest() == base; }));
  EXPECT_EQ(echo_calls_.load(), 0);
  ExpectServing();
}

TEST_F(ServerTest, FrameSplitIntoTinyWritesIsReassembled) {
  RawConn raw(sock_);
  std::string frame =
      MakeFrame(1, MessageType::kRequest, EncodeRequest(MakeReq(kEcho, "Echo", "pieces")));
  for (size_t i = 0; i < frame.size(); ++i) {
    ASSERT_TRUE(raw.Write(frame.substr(i, 1)));
    if (i % 7 == 0) std::this_thread::sleep_for(1ms);
  }
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->payload, "pieces");
}

TEST_F(ServerTest, UndecodableRequestIsInvalidArgumentAndConnectionSurvives) {
  RawConn raw(sock_);
  ASSERT_TRUE(raw.Write(MakeFrame(1, MessageType::kRequest, "\x0a\xff\xff\xff\xff\x0f")));
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(resp->status->code, static_cast<int>(Code::kInvalidArgument));
  EXPECT_TRUE(resp->status->message.starts_with("unmarshal request error: "))
      << resp->status->message;
  ASSERT_TRUE(raw.SendRequest(3, MakeReq(kEcho, "Echo", "fine")));
  resp = raw.ReadResponse(3);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->payload, "fine");
}

TEST_F(ServerTest, GarbageBytesDoNotDisturbOtherConnections) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  auto base = server_->ConnectionCountForTest();
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    RawConn raw(sock_);
    ASSERT_TRUE(raw.valid());
    raw.Write(testing::PseudoRandomBytes(1000 + seed * 997, seed));
    raw.ReadFrame(20ms);  // whatever it says, if anything
    raw.Close();
    auto r = c->Call(kEcho, "Echo", "alive", {.timeout = 5s});
    ASSERT_TRUE(r.has_value()) << "seed " << seed << ": " << r.error().ToString();
  }
  EXPECT_TRUE(WaitFor([&] { return server_->ConnectionCountForTest() == base; }));
  ExpectServing();
}

TEST_F(ServerTest, EvenStreamIdIsRejected) {
  RawConn raw(sock_);
  ASSERT_TRUE(raw.SendRequest(2, MakeReq(kEcho, "Echo", "x")));
  auto resp = raw.ReadResponse(2);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(StatusFromRpc(*resp->status),
            Status(Code::kInvalidArgument, "StreamID must be odd for client initiated streams"));
  EXPECT_EQ(echo_calls_.load(), 0);
}

TEST_F(ServerTest, WrongMessageTypes) {
  RawConn raw(sock_);
  // A response sent to the server and an unknown type: ignored, as ttrpc does.
  ASSERT_TRUE(raw.Write(MakeFrame(1, MessageType::kResponse, EncodeResponse(Status::Ok(), "x"))));
  ASSERT_TRUE(raw.Write(MakeFrame(3, static_cast<MessageType>(0x7f), "whatever")));
  EXPECT_FALSE(raw.ReadFrame(200ms).has_value());
  // A ttrpc 1.2 data frame: refused on its stream.
  ASSERT_TRUE(raw.Write(MakeFrame(5, MessageType::kData, "chunk")));
  auto resp = raw.ReadResponse(5);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(resp->status->code, static_cast<int>(Code::kInvalidArgument));
  // Still serving this connection.
  ASSERT_TRUE(raw.SendRequest(7, MakeReq(kEcho, "Echo", "ok")));
  resp = raw.ReadResponse(7);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->payload, "ok");
}

TEST_F(ServerTest, DuplicateStreamIdInFlightIsRejected) {
  RawConn raw(sock_);
  ASSERT_TRUE(raw.SendRequest(1, MakeReq(kAsync, "Hold", "first")));
  ASSERT_TRUE(WaitHeld(1));
  ASSERT_TRUE(raw.SendRequest(1, MakeReq(kAsync, "Hold", "second")));
  auto resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(resp->status->code, static_cast<int>(Code::kInvalidArgument));
  auto held = TakeHeld();
  ASSERT_EQ(held.size(), 1u);
  held[0].responder.Reply("first done");
  resp = raw.ReadResponse(1);
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->payload, "first done");
}

TEST_F(ServerTest, ClientThatNeverReadsIsThrottledAndOthersAreServed) {
  RawConn raw(sock_);
  ASSERT_TRUE(raw.valid());
  ASSERT_EQ(::fcntl(raw.fd(), F_SETFL, ::fcntl(raw.fd(), F_GETFL) | O_NONBLOCK), 0);
  // Each request asks for a 1 MiB answer that the client never reads.
  std::string frame;
  bool blocked = false;
  uint32_t stream = 1;
  size_t sent = 0;
  for (int i = 0; i < 200000 && !blocked; ++i, stream += 2) {
    frame = MakeFrame(stream, MessageType::kRequest,
                      EncodeRequest(MakeReq(kEcho, "Big", std::to_string(1 << 20))));
    std::string_view left = frame;
    while (!left.empty()) {
      ssize_t n = ::send(raw.fd(), left.data(), left.size(), MSG_NOSIGNAL);
      if (n > 0) {
        left.remove_prefix(static_cast<size_t>(n));
        sent += static_cast<size_t>(n);
        continue;
      }
      ASSERT_TRUE(n < 0 && errno == EAGAIN) << std::strerror(errno);
      pollfd p{raw.fd(), POLLOUT, 0};
      if (::poll(&p, 1, 500) == 0) {
        blocked = true;  // the server stopped reading from us
        break;
      }
    }
  }
  EXPECT_TRUE(blocked) << "sent " << sent << " bytes without back-pressure";
  // Reads paused after about max_pending_output (8 MiB) of answers, not one per request sent.
  EXPECT_LT(big_calls_.load(), 32) << "requests sent: " << stream / 2;
  ExpectServing();
  // Shutdown does not wait forever for it: the grace period closes it.
  std::promise<void> done;
  server_->Shutdown(300ms, [&] { done.set_value(); });
  EXPECT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(server_->ConnectionCountForTest(), 0u);
}

TEST_F(ServerTest, ClientClosingCancelsItsCalls) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  std::promise<Result<std::string>> got;
  c->CallAsync(kAsync, "Hold", "x", {},
               [&](Result<std::string> r) { got.set_value(std::move(r)); });
  ASSERT_TRUE(WaitHeld(1));
  c->Close();
  auto r = got.get_future().get();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kUnavailable, "ttrpc: closed"));
  ASSERT_TRUE(WaitCancels(1));
  std::lock_guard lock(mu_);
  EXPECT_EQ(cancels_[0], Status(Code::kCanceled, "context canceled"));
}

TEST_F(ServerTest, OnCancelRegisteredLateStillRunsAndNeverForAnsweredCalls) {
  std::promise<Responder> kept;
  ASSERT_TRUE(server_
                  ->RegisterAsync("test.Late", "Keep",
                                  [&](const Context&, std::string, Responder r) {
                                    kept.set_value(std::move(r));
                                  })
                  .ok());
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  c->CallAsync("test.Late", "Keep", "", {}, [](Result<std::string>) {});
  Responder r = kept.get_future().get();
  c->Close();
  ASSERT_TRUE(WaitFor([&] { return r.done(); }));
  std::promise<Status> why;
  r.OnCancel([&](const Status& s) { why.set_value(s); });
  auto f = why.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get().code(), Code::kCanceled);

  // An answered call: the callback is dropped, never run.
  auto c2 = Dial();
  ASSERT_NE(c2, nullptr);
  std::thread t([&] {
    auto res = c2->Call(kAsync, "Hold", "x");
    EXPECT_EQ(res.value_or("?"), "answered");
  });
  ASSERT_TRUE(WaitHeld(1));
  auto held = TakeHeld();
  held[0].responder.Reply("answered");
  t.join();
  std::atomic<bool> ran{false};
  held[0].responder.OnCancel([&](const Status&) { ran = true; });
  c2->Close();
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(ran);
  std::lock_guard lock(mu_);
  EXPECT_TRUE(cancels_.empty());
}

TEST_F(ServerTest, ServerCloseFailsPendingCallsUnavailable) {
  std::promise<Status> closed_why;
  auto c = Dial({.on_close = [&](const Status& why) { closed_why.set_value(why); }});
  ASSERT_NE(c, nullptr);
  std::thread caller([&] {
    auto r = c->Call(kAsync, "Hold", "x");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Status(Code::kUnavailable, "ttrpc: closed"));
  });
  ASSERT_TRUE(WaitHeld(1));
  server_->Close();
  caller.join();
  EXPECT_EQ(closed_why.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(c->closed());
  auto r = c->Call(kEcho, "Echo", "x");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  // Close removed the socket it created.
  EXPECT_NE(::access(sock_.c_str(), F_OK), 0);
}

TEST_F(ServerTest, GracefulShutdownFinishesCallsInFlight) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  std::promise<Result<std::string>> got;
  c->CallAsync(kAsync, "Hold", "x", {},
               [&](Result<std::string> r) { got.set_value(std::move(r)); });
  ASSERT_TRUE(WaitHeld(1));
  std::promise<void> done;
  server_->Shutdown(10s, [&] { done.set_value(); });
  // No longer listening; the call in flight is still served.
  EXPECT_FALSE(Client::Connect(sock_).has_value());
  auto fut = done.get_future();
  EXPECT_EQ(fut.wait_for(100ms), std::future_status::timeout);
  TakeHeld()[0].responder.Reply("finished");
  auto r = got.get_future().get();
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(*r, "finished");
  EXPECT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(WaitFor([&] { return c->closed(); }));
}

TEST_F(ServerTest, ShutdownGraceExpiryCancelsStragglers) {
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  std::promise<Result<std::string>> got;
  c->CallAsync(kAsync, "Hold", "x", {},
               [&](Result<std::string> r) { got.set_value(std::move(r)); });
  ASSERT_TRUE(WaitHeld(1));
  std::promise<void> done;
  server_->Shutdown(100ms, [&] { done.set_value(); });
  EXPECT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  auto r = got.get_future().get();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  ASSERT_TRUE(WaitCancels(1));
}

TEST_F(ServerTest, RegisterRefusesDuplicates) {
  EXPECT_EQ(server_
                ->Register(kEcho, "Echo",
                           [](const Context&, std::string_view) { return Result<std::string>(""); })
                .code(),
            Code::kAlreadyExists);
}

TEST_F(ServerTest, TypedHandlersAndTypedClient) {
  using google::protobuf::StringValue;
  ASSERT_TRUE((server_->RegisterTyped<StringValue, StringValue>(
                   "test.Typed", "Upper",
                   [](const Context&, const StringValue& in) -> Result<StringValue> {
                     StringValue out;
                     std::string v = in.value();
                     std::transform(v.begin(), v.end(), v.begin(), ::toupper);
                     out.set_value(v);
                     return out;
                   }))
                  .ok());
  ASSERT_TRUE((server_->RegisterTypedAsync<StringValue, StringValue>(
                   "test.Typed", "Later",
                   [](const Context&, const StringValue& in, TypedResponder<StringValue> r) {
                     std::thread([in, r] {
                       StringValue out;
                       out.set_value(in.value() + " later");
                       r.Reply(out);
                     }).detach();
                   }))
                  .ok());
  auto c = Dial();
  ASSERT_NE(c, nullptr);
  StringValue req, resp;
  req.set_value("shim");
  Status st = c->Call("test.Typed", "Upper", req, &resp);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(resp.value(), "SHIM");
  st = c->Call("test.Typed", "Later", req, &resp);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(resp.value(), "shim later");
  // A payload that is not a StringValue: Internal, worded as Go ttrpc.
  auto r = c->Call("test.Typed", "Upper", std::string("\x0a\x05x", 3));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInternal);
  EXPECT_TRUE(r.error().message().starts_with("ttrpc: error unmarshalling payload"));
}

// ---- sockets and fds ----

std::set<int> OpenFds() {
  std::set<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') fds.insert(std::atoi(e->d_name));
  }
  fds.erase(::dirfd(d));
  ::closedir(d);
  return fds;
}

TEST(ServerSocketTest, SocketIsMode0600AndEveryFdIsCloexec) {
  std::set<int> before = OpenFds();
  TempDir dir;
  mode_t old_umask = ::umask(0);  // a permissive umask must not widen the socket
  auto lt = LoopThread::Start();
  ASSERT_TRUE(lt.has_value());
  Server server((*lt)->loop());
  ASSERT_TRUE(
      server
          .Register("s", "m",
                    [](const Context&, std::string_view) { return Result<std::string>("ok"); })
          .ok());
  std::string path = dir.Join("s.sock");
  Status st = server.Listen(path);
  ::umask(old_umask);
  ASSERT_TRUE(st.ok()) << st.ToString();
  struct stat sb;
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_TRUE(S_ISSOCK(sb.st_mode));
  EXPECT_EQ(sb.st_mode & 07777, 0600u);

  auto c = Client::Connect("unix://" + path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  ASSERT_TRUE((*c)->Call("s", "m", "").has_value());
  std::set<int> after = OpenFds();
  int checked = 0;
  for (int fd : after) {
    if (before.contains(fd)) continue;
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) continue;
    EXPECT_TRUE(flags & FD_CLOEXEC) << "fd " << fd << " lacks FD_CLOEXEC";
    ++checked;
  }
  // epoll + eventfd for each of two loops, the listener, both ends of the connection.
  EXPECT_GE(checked, 7);
}

TEST(ServerSocketTest, ListenRefusesAbstractAndTakenPaths) {
  TempDir dir;
  auto lt = LoopThread::Start();
  ASSERT_TRUE(lt.has_value());
  Server server((*lt)->loop());
  EXPECT_EQ(server.Listen("@abstract").code(), Code::kInvalidArgument);
  EXPECT_EQ(server.Listen("unix://@abstract").code(), Code::kInvalidArgument);
  EXPECT_EQ(server.Listen("").code(), Code::kInvalidArgument);
  EXPECT_EQ(server.Listen(dir.Join(std::string(120, 'x'))).code(), Code::kInvalidArgument);
  std::string path = dir.Join("s.sock");
  ASSERT_TRUE(server.Listen(path).ok());
  Server other((*lt)->loop());
  EXPECT_EQ(other.Listen(path).code(), Code::kAlreadyExists);
}

TEST(ServerSocketTest, ServeAdoptsAListeningFdAndRefusesOthers) {
  TempDir dir;
  auto lt = LoopThread::Start();
  ASSERT_TRUE(lt.has_value());
  Server server((*lt)->loop());
  ASSERT_TRUE(
      server
          .Register("s", "m",
                    [](const Context&, std::string_view) { return Result<std::string>("adopted"); })
          .ok());
  // Not listening: refused.
  UniqueFd plain(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(server.Serve(std::move(plain)).code(), Code::kInvalidArgument);
  // Abstract listening socket: refused (CVE-2020-15257).
  UniqueFd abs(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::string name = "berth-ttrpc-test-" + std::to_string(::getpid());
  std::memcpy(sa.sun_path + 1, name.data(), name.size());
  ASSERT_EQ(::bind(abs.get(), reinterpret_cast<sockaddr*>(&sa),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
            0);
  ASSERT_EQ(::listen(abs.get(), 1), 0);
  EXPECT_EQ(server.Serve(std::move(abs)).code(), Code::kInvalidArgument);
  // A path socket handed over (the shim's fd 3): served, and its path left alone on close.
  std::string path = dir.Join("fd3.sock");
  UniqueFd l = testing::ListenUnix(path);
  ASSERT_TRUE(l.valid());
  ASSERT_TRUE(server.Serve(std::move(l)).ok());
  auto c = Client::Connect(path);
  ASSERT_TRUE(c.has_value());
  auto r = (*c)->Call("s", "m", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, "adopted");
  server.Close();
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
}

TEST(ServerSocketTest, PeerWithAnotherUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  auto lt = LoopThread::Start();
  ASSERT_TRUE(lt.has_value());
  Server server((*lt)->loop());
  std::atomic<int> calls{0};
  ASSERT_TRUE(server
                  .Register("s", "m",
                            [&](const Context&, std::string_view) {
                              ++calls;
                              return Result<std::string>("secret");
                            })
                  .ok());
  // A socket anyone may connect to, so only the credential check stands in the way.
  std::string path = dir.Join("open.sock");
  UniqueFd l = testing::ListenUnix(path);
  ASSERT_EQ(::chmod(path.c_str(), 0777), 0);
  ASSERT_TRUE(server.Serve(std::move(l)).ok());

  Request req;
  req.service = "s";
  req.method = "m";
  std::string frame = MakeFrame(1, MessageType::kRequest, EncodeRequest(req));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: async-signal-safe calls only. Exit 0 = refused (EOF, no answer).
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) ::_exit(11);
    ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    char buf[256];
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) ::_exit(12);
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::_exit(n <= 0 ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(calls.load(), 0);
  // Our own user is still welcome.
  auto c = Client::Connect(path);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE((*c)->Call("s", "m", "").has_value());
}

}  // namespace
}  // namespace berth::ttrpc
