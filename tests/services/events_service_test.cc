// Events.Publish / Events.Forward (gRPC) and the shared ForwardEnvelope the ttrpc events
// endpoint uses: what containerd validates on a forwarded envelope (namespace, topic,
// timestamp) and nothing more.
#include <google/protobuf/empty.pb.h>
#include <grpcpp/test/server_context_test_spouse.h>
#include <gtest/gtest.h>

#include <chrono>

#include "services/basic_services.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace {

namespace ev1 = containerd::services::events::v1;
using std::chrono::milliseconds;

// The next envelope the subscription got, or nullopt.
std::optional<events::Envelope> NextEnvelope(events::Subscription& sub) {
  auto next = sub.Next(milliseconds(1000));
  if (!next || !next->has_value()) return std::nullopt;
  return **next;
}

TEST(ForwardEnvelopeTest, AcceptsAnEmptyEvent) {
  events::Exchange ex;
  auto sub = ex.Subscribe(filters::Filter());
  google::protobuf::Timestamp ts = ToTimestamp(1700000000123456789);
  Status s = ForwardEnvelope(ex, "default", "/tasks/oom", &ts, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto env = NextEnvelope(*sub);
  ASSERT_TRUE(env);
  EXPECT_EQ(env->ns, "default");
  EXPECT_EQ(env->topic, "/tasks/oom");
  EXPECT_EQ(env->timestamp_ns, 1700000000123456789);
  EXPECT_EQ(env->type_url, "");
  EXPECT_EQ(env->payload, "");
  ex.Unsubscribe(sub);
}

TEST(ForwardEnvelopeTest, ValidatesNamespaceTopicAndTimestamp) {
  events::Exchange ex;
  google::protobuf::Timestamp ts = ToTimestamp(1);
  google::protobuf::Any any;
  any.set_type_url("containerd.events.TaskOOM");
  EXPECT_EQ(ForwardEnvelope(ex, "default", "/tasks/oom", nullptr, &any).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ForwardEnvelope(ex, "default", "/tasks/oom", nullptr, &any).message(),
            "timestamp must be set on forwarded event");
  EXPECT_EQ(ForwardEnvelope(ex, "bad/ns", "/tasks/oom", &ts, &any).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ForwardEnvelope(ex, "default", "no-slash", &ts, &any).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(ForwardEnvelope(ex, "default", "/tasks/oom", &ts, &any).ok());
}

TEST(EventsServiceTest, ForwardOverGrpcAcceptsAnEnvelopeWithoutEvent) {
  events::Exchange ex;
  EventsService svc(ex);
  auto sub = ex.Subscribe(filters::Filter());
  grpc::ServerContext ctx;
  ev1::ForwardRequest req;
  req.mutable_envelope()->set_namespace_("default");
  req.mutable_envelope()->set_topic("/tasks/exit");
  *req.mutable_envelope()->mutable_timestamp() = ToTimestamp(5);
  google::protobuf::Empty out;
  grpc::Status g = svc.Forward(&ctx, &req, &out);
  ASSERT_TRUE(g.ok()) << g.error_message();
  auto env = NextEnvelope(*sub);
  ASSERT_TRUE(env);
  EXPECT_EQ(env->topic, "/tasks/exit");
  EXPECT_EQ(env->timestamp_ns, 5);
  ex.Unsubscribe(sub);
}

TEST(EventsServiceTest, ForwardWithoutTimestampIsInvalidArgument) {
  events::Exchange ex;
  EventsService svc(ex);
  grpc::ServerContext ctx;
  ev1::ForwardRequest req;
  req.mutable_envelope()->set_namespace_("default");
  req.mutable_envelope()->set_topic("/tasks/exit");
  google::protobuf::Empty out;
  grpc::Status g = svc.Forward(&ctx, &req, &out);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.error_message(), "timestamp must be set on forwarded event");
}

TEST(EventsServiceTest, PublishNeedsNamespaceAndEvent) {
  events::Exchange ex;
  EventsService svc(ex);
  ev1::PublishRequest req;
  req.set_topic("/my/topic");
  google::protobuf::Empty out;
  {
    grpc::ServerContext ctx;
    grpc::Status g = svc.Publish(&ctx, &req, &out);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(g.error_message(), "namespace is required");
  }
  grpc::ServerContext ctx;
  grpc::testing::ServerContextTestSpouse spouse(&ctx);  // owns the header strings
  spouse.AddClientMetadata(kNamespaceHeader, "default");
  grpc::Status g = svc.Publish(&ctx, &req, &out);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.error_message(), "event must not be empty");
  req.mutable_event()->set_type_url("x.Y");
  EXPECT_TRUE(svc.Publish(&ctx, &req, &out).ok());
}

}  // namespace
}  // namespace berth::services
