// The ttrpc 1.1 wire format (containerd 1.6): frames and the three protobuf messages that ride
// in them. Pure functions, no I/O; the server and the client share them, and the robustness
// tests use them to build hostile input.
//
// A frame is a 10-byte big-endian header followed by `length` payload bytes:
//
//   uint32 length | uint32 stream_id | uint8 type | uint8 flags | payload[length]
//
// `type` 1 = request (client → server), 2 = response (server → client). ttrpc 1.2 adds 3 = data
// and the flags for streaming; containerd 1.6 never sends them and we do not implement streams.
// A payload may be at most 4 MiB (kMaxMessageSize); a receiver discards a longer one and the
// call fails ResourceExhausted, while the connection stays usable.
//
// Request and Response are protobuf messages that ttrpc defines in Go (types.go) without a
// .proto file. We encode them by hand with protobuf's CodedOutputStream rather than write a .proto
// of our own: three tiny messages do not justify a generated library, and it keeps berth_ttrpc
// free of the generated containerd API. Field numbers (ttrpc types.go):
//
//   Request  { 1 service string, 2 method string, 3 payload bytes, 4 timeout_nano int64,
//              5 metadata repeated KeyValue }
//   KeyValue { 1 key string, 2 value string }
//   Response { 1 status google.rpc.Status { 1 code int32, 2 message string, 3 details Any* },
//              2 payload bytes }
//
// Encoding matches Go's output byte for byte: fields in number order, proto3 zero values
// omitted, and no status at all in a successful response (grpc-go's Status.Proto() of OK is nil).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace berth::ttrpc {

inline constexpr size_t kHeaderSize = 10;
inline constexpr uint32_t kMaxMessageSize = 4u << 20;  // ttrpc's messageLengthMax

enum class MessageType : uint8_t {
  kRequest = 1,
  kResponse = 2,
  kData = 3,  // ttrpc >= 1.2 streaming; never produced here, answered with an error
};

struct FrameHeader {
  uint32_t length = 0;
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
};

void EncodeHeader(const FrameHeader& h, char out[kHeaderSize]);
FrameHeader DecodeHeader(const char in[kHeaderSize]);

// Header + payload in one string. The length field is payload.size(); callers check the limit.
std::string MakeFrame(uint32_t stream_id, MessageType type, std::string_view payload);

// ttrpc metadata: an ordered list of key/value pairs; a key may repeat. Keys given to Set/Add
// and looked up by Get are lower-cased, as Go's ttrpc.MD does; entries decoded from the wire
// keep the case they came with (so, as in Go, a key sent in upper case is never found by Get).
class Metadata {
 public:
  using Entry = std::pair<std::string, std::string>;

  // Appends a value for `key`.
  void Add(std::string_view key, std::string value);
  // Replaces every value of `key` with `value`.
  void Set(std::string_view key, std::string value);
  // First value of `key`, if any.
  std::optional<std::string> Get(std::string_view key) const;
  std::vector<std::string> GetAll(std::string_view key) const;

  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& mutable_entries() { return entries_; }
  bool empty() const { return entries_.empty(); }
  bool operator==(const Metadata&) const = default;

 private:
  std::vector<Entry> entries_;
};

struct Request {
  std::string service;
  std::string method;
  std::string payload;
  int64_t timeout_nano = 0;  // 0 = no deadline; < 0 = already expired (Go's context.WithTimeout)
  Metadata metadata;
};

// google.rpc.Status as it travels in a Response; details are kept undecoded.
struct RpcStatus {
  int32_t code = 0;
  std::string message;
  std::vector<std::string> details;  // serialized google.protobuf.Any, in order
};

struct Response {
  std::optional<RpcStatus> status;  // absent = OK
  std::string payload;
};

std::string EncodeRequest(const Request& req);
// InvalidArgument for malformed protobuf. Unknown fields, and known fields with an unexpected
// wire type, are skipped as Go's protobuf runtime does.
Result<Request> DecodeRequest(std::string_view data);

// Encodes a response: `payload` when `st` is OK, else the status and no payload.
std::string EncodeResponse(const Status& st, std::string_view payload);
std::string EncodeResponse(const Response& resp);
Result<Response> DecodeResponse(std::string_view data);

// The wire code as a Status code. Codes outside gRPC's 0..16 become Unknown.
Status StatusFromRpc(const RpcStatus& st);

// The ResourceExhausted status of an oversized message, worded as ttrpc's:
// "message length 5242880 exceed maximum message size of 4194304".
Status OversizedMessage(uint64_t length);

// Incremental frame parser for one byte stream. Feed it whatever read() returned; it hands
// out complete frames. A frame whose length exceeds kMaxMessageSize is skipped without
// buffering it, then reported as oversized once its last byte has been consumed (as ttrpc's
// channel.recv discards before answering).
class FrameReader {
 public:
  struct Event {
    bool oversized = false;  // header.length > kMaxMessageSize; payload empty
    FrameHeader header;
    std::string payload;
  };

  // Consumes all of `data`, appending completed frames to `out`.
  void Feed(std::string_view data, std::vector<Event>* out);
  // True while part of a frame (header or payload) has been consumed but not completed.
  bool mid_frame() const { return header_fill_ > 0 || state_ != State::kHeader; }

 private:
  enum class State { kHeader, kPayload, kDiscard };
  State state_ = State::kHeader;
  char header_buf_[kHeaderSize] = {};
  size_t header_fill_ = 0;
  FrameHeader header_;
  std::string payload_;
  size_t payload_fill_ = 0;
  uint64_t discard_left_ = 0;
};

}  // namespace berth::ttrpc
