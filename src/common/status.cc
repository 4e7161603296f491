#include "common/status.h"

#include <cerrno>
#include <cstring>

namespace berth {

std::string_view CodeName(Code code) {
  // Names as containerd's errdefs print them, so messages read the same as containerd's.
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kCanceled: return "context canceled";
    case Code::kUnknown: return "unknown";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kDeadlineExceeded: return "context deadline exceeded";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kResourceExhausted: return "resource exhausted";
    case Code::kFailedPrecondition: return "failed precondition";
    case Code::kAborted: return "aborted";
    case Code::kOutOfRange: return "out of range";
    case Code::kUnimplemented: return "not implemented";
    case Code::kInternal: return "internal";
    case Code::kUnavailable: return "unavailable";
    case Code::kDataLoss: return "data loss";
    case Code::kUnauthenticated: return "unauthenticated";
  }
  return "unknown";
}

Status Status::Wrap(std::string_view context) const& { return Status(*this).Wrap(context); }

Status Status::Wrap(std::string_view context) && {
  if (ok()) return std::move(*this);
  message_ = message_.empty() ? std::string(context) : std::string(context) + ": " + message_;
  return std::move(*this);
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (message_.empty()) return std::string(CodeName(code_));
  return message_ + ": " + std::string(CodeName(code_));
}

Status InvalidArgument(std::string msg) { return {Code::kInvalidArgument, std::move(msg)}; }
Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
Status AlreadyExists(std::string msg) { return {Code::kAlreadyExists, std::move(msg)}; }
Status FailedPrecondition(std::string msg) { return {Code::kFailedPrecondition, std::move(msg)}; }
Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }
Status Unimplemented(std::string msg) { return {Code::kUnimplemented, std::move(msg)}; }
Status Internal(std::string msg) { return {Code::kInternal, std::move(msg)}; }

Status StatusFromErrno(int err, std::string_view what) {
  Code code;
  switch (err) {
    case ENOENT: code = Code::kNotFound; break;
    case EEXIST: code = Code::kAlreadyExists; break;
    case EACCES:
    case EPERM: code = Code::kPermissionDenied; break;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE: code = Code::kResourceExhausted; break;
    case EINVAL: code = Code::kInvalidArgument; break;
    case ENOTEMPTY:
    case EBUSY: code = Code::kFailedPrecondition; break;
    default: code = Code::kInternal; break;
  }
  return Status(code, std::string(what) + ": " + std::strerror(err));
}

}  // namespace berth
