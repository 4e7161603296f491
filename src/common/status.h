// Status and Result: the one error convention of berth.
//
// A Status is a code from containerd's errdefs classes (which map 1:1 onto gRPC's canonical
// codes) plus a message. OK costs nothing but an empty string. Result<T> is std::expected<T,
// Status>. Only services/ translate a Status into grpc::Status; nothing below knows gRPC.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace berth {

// Values equal gRPC's canonical codes on purpose: the mapping in services/ is a cast, and
// containerd promises a non-Unknown code never changes (RELEASES.md) — so do we.
enum class Code : int {
  kOk = 0,
  kCanceled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  // Lets RETURN_IF_ERROR / ASSIGN_OR_RETURN serve functions returning Status too.
  Status(std::unexpected<Status> u) : Status(std::move(u).error()) {}  // NOLINT

  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Adds context in front of the message and keeps the code, like Go's fmt.Errorf("%w").
  Status Wrap(std::string_view context) const&;
  Status Wrap(std::string_view context) &&;

  // "message: class", the way containerd's Go clients print errors.
  std::string ToString() const;

  bool operator==(const Status&) const = default;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Status>;

// Shorthands that read like containerd's errdefs: `return NotFound("namespace " + n)`.
inline std::unexpected<Status> Err(Code c, std::string msg) {
  return std::unexpected(Status(c, std::move(msg)));
}
Status InvalidArgument(std::string msg);
Status NotFound(std::string msg);
Status AlreadyExists(std::string msg);
Status FailedPrecondition(std::string msg);
Status Unavailable(std::string msg);
Status Unimplemented(std::string msg);
Status Internal(std::string msg);

// errno → code in one place: ENOENT→NotFound, EEXIST→AlreadyExists, EACCES/EPERM→
// PermissionDenied, ENOSPC/EDQUOT/EMFILE/ENFILE→ResourceExhausted, EINVAL→InvalidArgument,
// ENOTEMPTY/EBUSY→FailedPrecondition, else Internal. The message is "<what>: <strerror>".
Status StatusFromErrno(int err, std::string_view what);

namespace internal {
inline Status ToStatus(Status s) { return s; }
template <typename T>
Status ToStatus(const Result<T>& r) {
  return r.has_value() ? Status() : r.error();
}
}  // namespace internal

}  // namespace berth

#define BERTH_CONCAT_INNER(a, b) a##b
#define BERTH_CONCAT(a, b) BERTH_CONCAT_INNER(a, b)

// Returns the Status of `expr` (a Status or a Result) from the current function if not OK.
// Works in functions returning Status or Result<T> (Status converts via std::unexpected).
// Each expansion names its own variable, so nested uses (a RETURN_IF_ERROR inside a lambda
// inside another's argument) shadow nothing.
#define RETURN_IF_ERROR(expr) RETURN_IF_ERROR_IMPL(BERTH_CONCAT(_berth_st_, __COUNTER__), expr)
#define RETURN_IF_ERROR_IMPL(st, expr)                              \
  do {                                                              \
    ::berth::Status st = ::berth::internal::ToStatus((expr));       \
    if (!st.ok()) return ::std::unexpected(std::move(st));          \
  } while (0)

// ASSIGN_OR_RETURN(auto x, ResultExpr()): binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(BERTH_CONCAT(_berth_r_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                  \
  auto tmp = (expr);                                           \
  if (!tmp.has_value()) return ::std::unexpected(std::move(tmp).error()); \
  lhs = std::move(tmp).value()
