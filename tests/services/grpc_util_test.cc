#include "services/grpc_util.h"

#include <gtest/gtest.h>

#include "github.com/containerd/containerd/api/events/container.pb.h"
#include "github.com/containerd/containerd/api/events/namespace.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"

namespace berth::services {
namespace {

TEST(GrpcUtilTest, StatusMapsToSameCode) {
  EXPECT_TRUE(ToGrpc(Status::Ok()).ok());
  grpc::Status g = ToGrpc(NotFound("namespace \"x\""));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "namespace \"x\"");
  EXPECT_EQ(ToGrpc(FailedPrecondition("")).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ToGrpc(Unavailable("")).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(GrpcUtilTest, TimestampRoundTrip) {
  for (int64_t ns : {int64_t{0}, int64_t{1}, int64_t{1764288000123456789}, int64_t{-1}}) {
    EXPECT_EQ(FromTimestamp(ToTimestamp(ns)), ns);
  }
  auto ts = ToTimestamp(-1);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999999999);
}

TEST(GrpcUtilTest, TypeUrlIsGoStyle) {
  containerd::events::TaskExit exit;
  EXPECT_EQ(TypeUrl(exit), "containerd.events.TaskExit");
}

TEST(GrpcUtilTest, MessageFieldForEventFilters) {
  containerd::events::ContainerCreate ev;
  ev.set_id("c1");
  ev.set_image("docker.io/library/busybox:latest");
  ev.mutable_runtime()->set_name("io.containerd.runc.v2");
  auto f = [&](std::vector<std::string> fp) { return MessageField(ev, fp); };
  EXPECT_EQ(f({"id"}), "c1");
  EXPECT_EQ(f({"image"}), "docker.io/library/busybox:latest");
  EXPECT_EQ(f({"runtime", "name"}), "io.containerd.runc.v2");
  EXPECT_EQ(f({"nope"}), std::nullopt);
  EXPECT_EQ(f({}), std::nullopt);
  EXPECT_EQ(f({"id", "extra"}), std::nullopt);

  containerd::events::TaskExit exit;
  exit.set_container_id("c2");
  exit.set_exit_status(7);
  EXPECT_EQ(MessageField(exit, std::vector<std::string>{"container_id"}), "c2");
  // Non-string scalars are "not present", as containerd's generated adaptors answer.
  EXPECT_EQ(MessageField(exit, std::vector<std::string>{"exit_status"}), std::nullopt);
}

TEST(GrpcUtilTest, MessageFieldLooksUpMapsWithDottedKeys) {
  containerd::events::NamespaceCreate ns;
  ns.set_name("n1");
  (*ns.mutable_labels())["containerd.io/gc.root"] = "yes";
  std::vector<std::string> fp = {"labels", "containerd", "io/gc", "root"};
  EXPECT_EQ(MessageField(ns, fp), "yes");
  EXPECT_EQ(MessageField(ns, std::vector<std::string>{"labels"}), std::nullopt);
}

}  // namespace
}  // namespace berth::services
