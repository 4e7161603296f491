#include "events/exchange.h"

#include <gtest/gtest.h>

#include <thread>

namespace berth::events {
namespace {

using std::chrono::milliseconds;

Envelope Make(const std::string& ns, const std::string& topic) {
  Envelope e;
  e.ns = ns;
  e.topic = topic;
  e.type_url = "containerd.events.TaskExit";
  e.payload = "x";
  return e;
}

TEST(TopicTest, Validation) {
  EXPECT_TRUE(ValidateTopic("/tasks/exit").ok());
  EXPECT_TRUE(ValidateTopic("/namespaces/create").ok());
  for (const char* bad : {"", "tasks/exit", "/", "/tasks//exit", "/tasks/", "/bad topic"}) {
    EXPECT_EQ(ValidateTopic(bad).code(), Code::kInvalidArgument) << bad;
  }
}

TEST(ExchangeTest, DeliversToMatchingSubscribersInOrder) {
  Exchange ex;
  auto all = ex.Subscribe(filters::Filter());
  auto f = filters::Parse("topic==\"/tasks/exit\"");
  ASSERT_TRUE(f);
  auto exits = ex.Subscribe(*f);
  ASSERT_TRUE(ex.Publish(Make("default", "/tasks/start")).ok());
  ASSERT_TRUE(ex.Publish(Make("default", "/tasks/exit")).ok());

  auto a = all->Next(milliseconds(100));
  ASSERT_TRUE(a && a->has_value());
  EXPECT_EQ((*a)->topic, "/tasks/start");
  EXPECT_GT((*a)->timestamp_ns, 0);  // stamped by Publish
  auto b = all->Next(milliseconds(100));
  ASSERT_TRUE(b && b->has_value());
  EXPECT_EQ((*b)->topic, "/tasks/exit");

  auto e = exits->Next(milliseconds(100));
  ASSERT_TRUE(e && e->has_value());
  EXPECT_EQ((*e)->topic, "/tasks/exit");
  auto none = exits->Next(milliseconds(10));
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

TEST(ExchangeTest, NamespaceAndEventFieldFilters) {
  Exchange ex;
  auto f = filters::Parse("namespace==moby,event.container_id==c1");
  ASSERT_TRUE(f);
  auto sub = ex.Subscribe(*f);
  Envelope other_ns = Make("default", "/tasks/exit");
  other_ns.event_fields = [](std::span<const std::string> fp) -> std::optional<std::string> {
    if (fp.size() == 1 && fp[0] == "container_id") return "c1";
    return std::nullopt;
  };
  Envelope match = other_ns;
  match.ns = "moby";
  Envelope other_id = match;
  other_id.event_fields = [](std::span<const std::string>) -> std::optional<std::string> {
    return "c2";
  };
  ASSERT_TRUE(ex.Publish(other_ns).ok());
  ASSERT_TRUE(ex.Publish(other_id).ok());
  ASSERT_TRUE(ex.Publish(match).ok());
  auto got = sub->Next(milliseconds(100));
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->ns, "moby");
  EXPECT_FALSE(sub->Next(milliseconds(10))->has_value());
}

TEST(ExchangeTest, PublishValidates) {
  Exchange ex;
  EXPECT_EQ(ex.Publish(Make("", "/a")).code(), Code::kInvalidArgument);
  EXPECT_EQ(ex.Publish(Make("bad ns", "/a")).code(), Code::kInvalidArgument);
  EXPECT_EQ(ex.Publish(Make("ns", "a")).code(), Code::kInvalidArgument);
  Envelope no_event = Make("ns", "/a");
  no_event.type_url.clear();
  EXPECT_EQ(ex.Publish(no_event).code(), Code::kInvalidArgument);
}

TEST(ExchangeTest, SlowSubscriberIsDroppedNotBuffered) {
  Exchange ex;
  auto slow = ex.Subscribe(filters::Filter());
  for (size_t i = 0; i < Subscription::kMaxQueued + 1; ++i) {
    ASSERT_TRUE(ex.Publish(Make("ns", "/t")).ok());
  }
  auto r = slow->Next(milliseconds(10));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kResourceExhausted);
}

TEST(ExchangeTest, CloseAllWakesWaiters) {
  Exchange ex;
  auto sub = ex.Subscribe(filters::Filter());
  std::thread t([&] { ex.CloseAll(); });
  auto r = sub->Next(milliseconds(5000));
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

// dockerd re-subscribes as soon as its stream ends; during shutdown the new stream must end at
// once too, or it holds berthd's stop for the whole grace period.
TEST(ExchangeTest, SubscribeAfterCloseAllStartsClosed) {
  Exchange ex;
  ex.CloseAll();
  auto sub = ex.Subscribe(filters::Filter());
  auto r = sub->Next(milliseconds(5000));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST(ExchangeTest, UnsubscribedGetsNothing) {
  Exchange ex;
  auto sub = ex.Subscribe(filters::Filter());
  ex.Unsubscribe(sub);
  ASSERT_TRUE(ex.Publish(Make("ns", "/t")).ok());
  EXPECT_FALSE(sub->Next(milliseconds(10)));
}

}  // namespace
}  // namespace berth::events
