// The handler wrapper of services/grpc_util.h: namespace check, exception guard and the
// Status → grpc::Status mapping, without a server (metadata set through gRPC's test spouse).
#include <grpcpp/test/server_context_test_spouse.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "services/grpc_util.h"

namespace berth::services {
namespace {

class HandleTest : public ::testing::Test {
 protected:
  // The spouse owns the metadata strings: it must outlive every read of them.
  void SetHeader(const std::string& key, const std::string& value) {
    spouse_.AddClientMetadata(key, value);
  }
  grpc::ServerContext ctx_;
  grpc::testing::ServerContextTestSpouse spouse_{&ctx_};
};

TEST_F(HandleTest, PassesNamespaceAndLeaseToTheBody) {
  SetHeader(kNamespaceHeader, "ns1");
  SetHeader(kLeaseHeader, "lease-7");
  CallCtx seen;
  grpc::Status g = Handle("T.Ok", &ctx_, [&](const CallCtx& c) -> Status {
    seen = c;
    return Status::Ok();
  });
  EXPECT_TRUE(g.ok());
  EXPECT_EQ(seen.ns, "ns1");
  EXPECT_EQ(seen.lease, "lease-7");
}

TEST_F(HandleTest, NoLeaseHeaderIsEmptyLease) {
  SetHeader(kNamespaceHeader, "default");
  std::string lease = "unset";
  EXPECT_TRUE(Handle("T", &ctx_, [&](const CallCtx& c) -> Status {
                lease = c.lease;
                return Status::Ok();
              }).ok());
  EXPECT_EQ(lease, "");
}

TEST_F(HandleTest, MissingNamespaceIsFailedPreconditionAndSkipsTheBody) {
  bool ran = false;
  grpc::Status g = Handle("T", &ctx_, [&](const CallCtx&) -> Status {
    ran = true;
    return Status::Ok();
  });
  EXPECT_FALSE(ran);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(g.error_message(), "namespace is required");
}

TEST_F(HandleTest, EmptyNamespaceIsFailedPrecondition) {
  SetHeader(kNamespaceHeader, "");
  grpc::Status g = Handle("T", &ctx_, [](const CallCtx&) -> Status { return Status::Ok(); });
  EXPECT_EQ(g.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(g.error_message(), "namespace is required");
}

TEST_F(HandleTest, InvalidNamespaceIsInvalidArgument) {
  SetHeader(kNamespaceHeader, "bad/name");
  bool ran = false;
  grpc::Status g = Handle("T", &ctx_, [&](const CallCtx&) -> Status {
    ran = true;
    return Status::Ok();
  });
  EXPECT_FALSE(ran);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(g.error_message().starts_with("namespace validation: ")) << g.error_message();
}

TEST_F(HandleTest, BodyStatusKeepsCodeAndMessage) {
  SetHeader(kNamespaceHeader, "default");
  const std::pair<Status, grpc::StatusCode> cases[] = {
      {NotFound("image \"x\": not found"), grpc::StatusCode::NOT_FOUND},
      {AlreadyExists("content sha256:ab: already exists"), grpc::StatusCode::ALREADY_EXISTS},
      {FailedPrecondition("snapshot busy"), grpc::StatusCode::FAILED_PRECONDITION},
      {Unavailable("ref r locked"), grpc::StatusCode::UNAVAILABLE},
      {Status(Code::kOutOfRange, "read past object length 3 bytes"),
       grpc::StatusCode::OUT_OF_RANGE},
      {Status(Code::kCanceled, "client gone"), grpc::StatusCode::CANCELLED},
      {Unimplemented("checkpoint is not supported"), grpc::StatusCode::UNIMPLEMENTED},
  };
  for (const auto& [st, code] : cases) {
    grpc::Status g = Handle("T", &ctx_, [&](const CallCtx&) -> Status { return st; });
    EXPECT_EQ(g.error_code(), code) << st.ToString();
    EXPECT_EQ(g.error_message(), st.message());
  }
}

TEST_F(HandleTest, ReturnMacrosWorkInBodies) {
  SetHeader(kNamespaceHeader, "default");
  auto lookup = [](bool ok) -> Result<int> {
    if (ok) return 42;
    return std::unexpected(NotFound("no such thing"));
  };
  int got = 0;
  grpc::Status g = Handle("T", &ctx_, [&](const CallCtx&) -> Status {
    ASSIGN_OR_RETURN(got, lookup(true));
    RETURN_IF_ERROR(lookup(false));
    return Internal("not reached");
  });
  EXPECT_EQ(got, 42);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "no such thing");
}

TEST_F(HandleTest, ExceptionBecomesInternalNamingTheMethod) {
  SetHeader(kNamespaceHeader, "default");
  grpc::Status g = Handle("Images.Get", &ctx_, [](const CallCtx&) -> Status {
    throw std::runtime_error("boom");
  });
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(g.error_message(), "Images.Get: boom");
}

TEST(HandleNoNamespaceTest, RunsWithoutNamespaceAndGuards) {
  EXPECT_TRUE(HandleNoNamespace("Version", []() -> Status { return Status::Ok(); }).ok());
  grpc::Status g = HandleNoNamespace("Namespaces.Get", []() -> Status {
    throw std::length_error("too long");
  });
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(g.error_message(), "Namespaces.Get: too long");
  g = HandleNoNamespace("X", []() -> Status { return InvalidArgument("cannot update \"x\""); });
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.error_message(), "cannot update \"x\"");
}

TEST(RequireCallCtxTest, ReadsBothHeaders) {
  grpc::ServerContext ctx;
  grpc::testing::ServerContextTestSpouse spouse(&ctx);
  spouse.AddClientMetadata(kNamespaceHeader, "k8s.io");
  auto c = RequireCallCtx(&ctx);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->ns, "k8s.io");
  EXPECT_EQ(c->lease, "");
}

}  // namespace
}  // namespace berth::services
