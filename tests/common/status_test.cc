#include "common/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace berth {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Err(Code::kInvalidArgument, "odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x));
  return Status::Ok();
}

TEST(StatusTest, OkIsDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), Code::kOk);
  EXPECT_EQ(s.ToString(), "ok");
}

TEST(StatusTest, CodesEqualGrpcCanonicalCodes) {
  // services/ casts Code to grpc::StatusCode: the numbers are part of the wire contract.
  EXPECT_EQ(static_cast<int>(Code::kNotFound), 5);
  EXPECT_EQ(static_cast<int>(Code::kAlreadyExists), 6);
  EXPECT_EQ(static_cast<int>(Code::kFailedPrecondition), 9);
  EXPECT_EQ(static_cast<int>(Code::kUnimplemented), 12);
  EXPECT_EQ(static_cast<int>(Code::kUnavailable), 14);
  EXPECT_EQ(static_cast<int>(Code::kDataLoss), 15);
}

TEST(StatusTest, WrapKeepsCodeAndPrefixesContext) {
  Status s = NotFound("blob sha256:abc").Wrap("read manifest");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "read manifest: blob sha256:abc");
  EXPECT_EQ(s.ToString(), "read manifest: blob sha256:abc: not found");
  EXPECT_TRUE(Status::Ok().Wrap("ctx").ok());
}

TEST(StatusTest, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(3).code(), Code::kInvalidArgument);
}

TEST(StatusTest, ErrnoMapping) {
  struct Case {
    int err;
    Code code;
  } cases[] = {
      {ENOENT, Code::kNotFound},           {EEXIST, Code::kAlreadyExists},
      {EACCES, Code::kPermissionDenied},   {EPERM, Code::kPermissionDenied},
      {ENOSPC, Code::kResourceExhausted},  {EDQUOT, Code::kResourceExhausted},
      {EMFILE, Code::kResourceExhausted},  {EINVAL, Code::kInvalidArgument},
      {ENOTEMPTY, Code::kFailedPrecondition}, {EBUSY, Code::kFailedPrecondition},
      {EIO, Code::kInternal},
  };
  for (const auto& c : cases) {
    Status s = StatusFromErrno(c.err, "open /x");
    EXPECT_EQ(s.code(), c.code) << c.err;
    EXPECT_TRUE(s.message().starts_with("open /x: ")) << s.message();
  }
}

}  // namespace
}  // namespace berth
