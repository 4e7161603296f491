// Client behaviour against a hand-driven fake server: what goes on the wire, and what the
// client makes of bad answers, late answers and a server that goes away.
#include "ttrpc/client.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "test_util.h"

namespace berth::ttrpc {
namespace {

using testing::Frame;
using testing::RawConn;
using testing::TempDir;
using namespace std::chrono_literals;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Join("fake.sock");
    listener_ = testing::ListenUnix(path_);
    ASSERT_TRUE(listener_.valid());
  }

  // Connects a client and accepts its connection on the fake server side.
  std::unique_ptr<Client> Connect(ClientOptions opts = {}) {
    auto c = Client::Connect(path_, std::move(opts));
    EXPECT_TRUE(c.has_value()) << c.error().ToString();
    UniqueFd fd = testing::AcceptWithTimeout(listener_.get());
    EXPECT_TRUE(fd.valid());
    peer_ = std::make_unique<RawConn>(std::move(fd));
    return c ? std::move(*c) : nullptr;
  }

  // Starts a call; the result arrives in the returned future.
  std::future<Result<std::string>> Start(Client& c, std::string method, std::string payload,
                                         CallOptions opts = {}) {
    auto p = std::make_shared<std::promise<Result<std::string>>>();
    auto f = p->get_future();
    c.CallAsync("fake.Svc", method, std::move(payload), opts,
                [p](Result<std::string> r) { p->set_value(std::move(r)); });
    return f;
  }

  // Reads the next request from the client.
  std::pair<uint32_t, Request> NextRequest() {
    auto f = peer_->ReadFrame();
    if (!f) {
      ADD_FAILURE() << "no request";
      return {};
    }
    EXPECT_EQ(f->header.type, static_cast<uint8_t>(MessageType::kRequest));
    EXPECT_EQ(f->header.flags, 0);
    auto req = DecodeRequest(f->payload);
    EXPECT_TRUE(req.has_value());
    return {f->header.stream_id, req.value_or(Request{})};
  }

  void Answer(uint32_t stream, const Status& st, std::string_view payload) {
    ASSERT_TRUE(
        peer_->Write(MakeFrame(stream, MessageType::kResponse, EncodeResponse(st, payload))));
  }

  TempDir dir_;
  std::string path_;
  UniqueFd listener_;
  std::unique_ptr<RawConn> peer_;
};

TEST_F(ClientTest, RequestsOnTheWireAndOutOfOrderAnswers) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CallOptions opts;
  opts.timeout = 7s;
  opts.metadata.Add("containerd-namespace-ttrpc", "ns1");
  auto f1 = Start(*c, "A", "one", opts);
  auto f2 = Start(*c, "B", "two");
  auto f3 = Start(*c, "C", "three");
  auto [id1, r1] = NextRequest();
  auto [id2, r2] = NextRequest();
  auto [id3, r3] = NextRequest();
  // Odd, increasing from 1, as ttrpc clients number their streams.
  EXPECT_EQ(id1, 1u);
  EXPECT_EQ(id2, 3u);
  EXPECT_EQ(id3, 5u);
  EXPECT_EQ(r1.service, "fake.Svc");
  EXPECT_EQ(r1.method, "A");
  EXPECT_EQ(r1.payload, "one");
  EXPECT_GT(r1.timeout_nano, 6'000'000'000);
  EXPECT_LE(r1.timeout_nano, 7'000'000'000);
  EXPECT_EQ(r1.metadata.Get("containerd-namespace-ttrpc"), "ns1");
  EXPECT_EQ(r2.timeout_nano, 0);
  EXPECT_TRUE(r2.metadata.empty());
  Answer(id3, Status::Ok(), "3");
  Answer(id1, Status(Code::kFailedPrecondition, "not yet"), "");
  Answer(id2, Status::Ok(), "2");
  auto a3 = f3.get();
  auto a1 = f1.get();
  auto a2 = f2.get();
  EXPECT_EQ(a3.value_or("?"), "3");
  EXPECT_EQ(a2.value_or("?"), "2");
  ASSERT_FALSE(a1.has_value());
  EXPECT_EQ(a1.error(), Status(Code::kFailedPrecondition, "not yet"));
}

TEST_F(ClientTest, BadAnswersFailOnlyTheirCall) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto garbage = Start(*c, "G", "");
  auto wrong_type = Start(*c, "W", "");
  auto oversized = Start(*c, "O", "");
  auto good = Start(*c, "K", "");
  auto [g, rg] = NextRequest();
  auto [w, rw] = NextRequest();
  auto [o, ro] = NextRequest();
  auto [k, rk] = NextRequest();
  // An answer for a stream nobody asked about: ignored.
  Answer(999, Status::Ok(), "stray");
  ASSERT_TRUE(peer_->Write(MakeFrame(g, MessageType::kResponse, "\x0a\xff\xff\xff\xff\x0f")));
  ASSERT_TRUE(peer_->Write(MakeFrame(w, MessageType::kRequest, "")));
  char h[kHeaderSize];
  EncodeHeader({kMaxMessageSize + 10, o, 2, 0}, h);
  ASSERT_TRUE(peer_->Write(std::string(h, kHeaderSize) + std::string(kMaxMessageSize + 10, 'z')));
  Answer(k, Status::Ok(), "fine");

  auto rg_ = garbage.get();
  ASSERT_FALSE(rg_.has_value());
  EXPECT_EQ(rg_.error().code(), Code::kInternal);
  auto rw_ = wrong_type.get();
  ASSERT_FALSE(rw_.has_value());
  EXPECT_EQ(rw_.error(), Status(Code::kInternal, "ttrpc: unknown message type 1 received"));
  auto ro_ = oversized.get();
  ASSERT_FALSE(ro_.has_value());
  EXPECT_EQ(ro_.error(), Status(Code::kResourceExhausted,
                                "message length 4194314 exceed maximum message size of 4194304"));
  EXPECT_EQ(good.get().value_or("?"), "fine");
  EXPECT_FALSE(c->closed());
}

TEST_F(ClientTest, DeadlineFailsTheCallAndALateAnswerIsIgnored) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto start = Clock::now();
  auto f = Start(*c, "Slow", "", {.timeout = 100ms});
  auto [id, req] = NextRequest();
  EXPECT_GT(req.timeout_nano, 0);
  EXPECT_LE(req.timeout_nano, 100'000'000);
  auto r = f.get();
  EXPECT_GE(Clock::now() - start, 100ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kDeadlineExceeded, "context deadline exceeded"));
  Answer(id, Status::Ok(), "late");
  auto next = Start(*c, "Next", "");
  auto [id2, req2] = NextRequest();
  Answer(id2, Status::Ok(), "next");
  EXPECT_EQ(next.get().value_or("?"), "next");
  // A zero timeout never leaves the process.
  auto zero = c->Call("fake.Svc", "Zero", "", {.timeout = 0s});
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().code(), Code::kDeadlineExceeded);
  EXPECT_FALSE(peer_->ReadFrame(100ms).has_value());
}

TEST_F(ClientTest, ServerClosingMidFrameFailsEveryPendingCall) {
  std::promise<Status> closed;
  auto c = Connect({.on_close = [&](const Status& why) { closed.set_value(why); }});
  ASSERT_NE(c, nullptr);
  std::vector<std::future<Result<std::string>>> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(Start(*c, "M", std::to_string(i)));
  // A sync caller on another thread too.
  std::promise<Result<std::string>> sync_result;
  std::thread sync([&] { sync_result.set_value(c->Call("fake.Svc", "S", "")); });
  for (int i = 0; i < 11; ++i) NextRequest();
  std::string frame = MakeFrame(1, MessageType::kResponse, EncodeResponse(Status::Ok(), "partial"));
  ASSERT_TRUE(peer_->Write(std::string_view(frame).substr(0, 12)));
  peer_->Close();
  for (auto& f : calls) {
    auto r = f.get();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), Status(Code::kUnavailable, "ttrpc: closed"));
  }
  sync.join();
  auto sr = sync_result.get_future().get();
  ASSERT_FALSE(sr.has_value());
  EXPECT_EQ(sr.error().code(), Code::kUnavailable);
  auto why = closed.get_future();
  ASSERT_EQ(why.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(why.get().message(), "ttrpc: connection closed mid-frame");
  EXPECT_TRUE(c->closed());
  auto after = c->Call("fake.Svc", "After", "");
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error(), Status(Code::kUnavailable, "ttrpc: closed"));
}

TEST_F(ClientTest, DestroyingTheClientFailsPendingCalls) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto f = Start(*c, "Pending", "");
  NextRequest();
  c.reset();
  auto r = f.get();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_TRUE(peer_->WaitClosed());
}

TEST_F(ClientTest, ConcurrentSyncCallersFromManyThreads) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  constexpr int kCallers = 64;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      auto r = c->Call("fake.Svc", "Echo", "p" + std::to_string(i), {.timeout = 20s});
      if (r.has_value() && *r == "p" + std::to_string(i) + "!") ++ok;
    });
  }
  // Collect all, then answer newest first.
  std::vector<std::pair<uint32_t, std::string>> got;
  for (int i = 0; i < kCallers; ++i) {
    auto [id, req] = NextRequest();
    got.emplace_back(id, req.payload);
  }
  for (auto it = got.rbegin(); it != got.rend(); ++it)
    Answer(it->first, Status::Ok(), it->second + "!");
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kCallers);
}

TEST(ClientConnectTest, DialErrors) {
  TempDir dir;
  auto r = Client::Connect(dir.Join("nobody.sock"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_TRUE(r.error().message().starts_with("dial unix " + dir.Join("nobody.sock")))
      << r.error().message();
  EXPECT_EQ(Client::Connect("@abstract").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(Client::Connect("unix://").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(Client::Connect("/" + std::string(200, 'a')).error().code(), Code::kInvalidArgument);
}

TEST(ClientConnectTest, ClientOnACallerLoop) {
  TempDir dir;
  std::string path = dir.Join("s.sock");
  UniqueFd l = testing::ListenUnix(path);
  auto lt = LoopThread::Start();
  ASSERT_TRUE(lt.has_value());
  auto c = Client::Connect((*lt)->loop(), path);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  RawConn peer(testing::AcceptWithTimeout(l.get()));
  std::thread answer([&] {
    auto f = peer.ReadFrame();
    ASSERT_TRUE(f.has_value());
    peer.Write(MakeFrame(f->header.stream_id, MessageType::kResponse,
                         EncodeResponse(Status::Ok(), "shared loop")));
  });
  auto r = (*c)->Call("s", "m", "");
  answer.join();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, "shared loop");
  c->reset();
  EXPECT_TRUE(peer.WaitClosed());
}

}  // namespace
}  // namespace berth::ttrpc
