#include "ttrpc/protocol.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <cctype>

namespace berth::ttrpc {

namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;

constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kBytes = 2;
constexpr uint32_t kStartGroup = 3;
constexpr uint32_t kEndGroup = 4;
constexpr uint32_t kFixed32 = 5;

constexpr uint32_t Tag(uint32_t field, uint32_t wire_type) { return field << 3 | wire_type; }

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

template <typename Fn>
std::string Encode(Fn&& fn) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    CodedOutputStream cos(&sos);
    fn(cos);
  }  // CodedOutputStream trims `out` to what was written when it goes away.
  return out;
}

// Always written: repeated elements and present sub-messages, even when empty.
void PutBytes(CodedOutputStream& o, uint32_t field, std::string_view v) {
  o.WriteTag(Tag(field, kBytes));
  o.WriteVarint32(static_cast<uint32_t>(v.size()));
  o.WriteRaw(v.data(), static_cast<int>(v.size()));
}

// proto3 singular scalar: omitted when it holds the default.
void PutOptBytes(CodedOutputStream& o, uint32_t field, std::string_view v) {
  if (!v.empty()) PutBytes(o, field, v);
}

Status Malformed(std::string_view what) {
  return InvalidArgument("proto: " + std::string(what) + ": malformed message");
}

bool SkipField(CodedInputStream& in, uint32_t tag, int depth);

bool SkipGroup(CodedInputStream& in, uint32_t start_tag, int depth) {
  if (depth > 64) return false;
  for (;;) {
    uint32_t tag = in.ReadTag();
    if (tag == 0) return false;
    if ((tag & 7) == kEndGroup) return (tag >> 3) == (start_tag >> 3);
    if (!SkipField(in, tag, depth + 1)) return false;
  }
}

// Skips one field of any wire type; false on malformed input.
bool SkipField(CodedInputStream& in, uint32_t tag, int depth = 0) {
  switch (tag & 7) {
    case kVarint: {
      uint64_t v;
      return in.ReadVarint64(&v);
    }
    case kFixed64:
      return in.Skip(8);
    case kFixed32:
      return in.Skip(4);
    case kBytes: {
      uint32_t len;
      return in.ReadVarint32(&len) && len <= INT32_MAX && in.Skip(static_cast<int>(len));
    }
    case kStartGroup:
      return SkipGroup(in, tag, depth);
    default:
      return false;  // a stray end-group, or wire types 6 and 7
  }
}

bool ReadBytes(CodedInputStream& in, std::string* out) {
  uint32_t len;
  if (!in.ReadVarint32(&len) || len > INT32_MAX) return false;
  return in.ReadString(out, static_cast<int>(len));
}

// Walks the fields of `data`: `fn(in, field, wire_type)` returns 1 when it consumed the
// field, 0 to have it skipped, -1 on malformed content. Mirrors Go: a known field number with
// an unexpected wire type is treated as unknown and skipped.
template <typename Fn>
bool ForEachField(std::string_view data, Fn&& fn) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(data.data()), static_cast<int>(data.size()));
  for (;;) {
    // ReadTag answers 0 at the end and for garbage alike; only a clean end is success.
    int before = in.CurrentPosition();
    uint32_t tag = in.ReadTag();
    if (tag == 0) return before == static_cast<int>(data.size());
    if ((tag >> 3) == 0) return false;
    int r = fn(in, tag >> 3, tag & 7);
    if (r < 0) return false;
    if (r == 0 && !SkipField(in, tag)) return false;
  }
}

bool DecodeKeyValue(std::string_view data, Metadata::Entry* kv) {
  return ForEachField(data, [&](CodedInputStream& in, uint32_t field, uint32_t wt) {
    if (wt != kBytes || (field != 1 && field != 2)) return 0;
    return ReadBytes(in, field == 1 ? &kv->first : &kv->second) ? 1 : -1;
  });
}

bool DecodeRpcStatus(std::string_view data, RpcStatus* st) {
  return ForEachField(data, [&](CodedInputStream& in, uint32_t field, uint32_t wt) {
    if (field == 1 && wt == kVarint) {
      uint64_t v;
      if (!in.ReadVarint64(&v)) return -1;
      st->code = static_cast<int32_t>(static_cast<uint32_t>(v));
      return 1;
    }
    if (field == 2 && wt == kBytes) return ReadBytes(in, &st->message) ? 1 : -1;
    if (field == 3 && wt == kBytes) {
      std::string any;
      if (!ReadBytes(in, &any)) return -1;
      st->details.push_back(std::move(any));
      return 1;
    }
    return 0;
  });
}

}  // namespace

void EncodeHeader(const FrameHeader& h, char out[kHeaderSize]) {
  auto put32 = [](char* p, uint32_t v) {
    p[0] = static_cast<char>(v >> 24);
    p[1] = static_cast<char>(v >> 16);
    p[2] = static_cast<char>(v >> 8);
    p[3] = static_cast<char>(v);
  };
  put32(out, h.length);
  put32(out + 4, h.stream_id);
  out[8] = static_cast<char>(h.type);
  out[9] = static_cast<char>(h.flags);
}

FrameHeader DecodeHeader(const char in[kHeaderSize]) {
  auto get32 = [](const char* p) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return uint32_t{u[0]} << 24 | uint32_t{u[1]} << 16 | uint32_t{u[2]} << 8 | uint32_t{u[3]};
  };
  FrameHeader h;
  h.length = get32(in);
  h.stream_id = get32(in + 4);
  h.type = static_cast<uint8_t>(in[8]);
  h.flags = static_cast<uint8_t>(in[9]);
  return h;
}

std::string MakeFrame(uint32_t stream_id, MessageType type, std::string_view payload) {
  std::string frame(kHeaderSize + payload.size(), '\0');
  EncodeHeader({static_cast<uint32_t>(payload.size()), stream_id, static_cast<uint8_t>(type), 0},
               frame.data());
  std::copy(payload.begin(), payload.end(), frame.begin() + kHeaderSize);
  return frame;
}

void Metadata::Add(std::string_view key, std::string value) {
  entries_.emplace_back(Lower(key), std::move(value));
}

void Metadata::Set(std::string_view key, std::string value) {
  std::string k = Lower(key);
  std::erase_if(entries_, [&](const Entry& e) { return e.first == k; });
  entries_.emplace_back(std::move(k), std::move(value));
}

std::optional<std::string> Metadata::Get(std::string_view key) const {
  std::string k = Lower(key);
  for (const auto& [ek, ev] : entries_) {
    if (ek == k) return ev;
  }
  return std::nullopt;
}

std::vector<std::string> Metadata::GetAll(std::string_view key) const {
  std::string k = Lower(key);
  std::vector<std::string> out;
  for (const auto& [ek, ev] : entries_) {
    if (ek == k) out.push_back(ev);
  }
  return out;
}

std::string EncodeRequest(const Request& req) {
  return Encode([&](CodedOutputStream& o) {
    PutOptBytes(o, 1, req.service);
    PutOptBytes(o, 2, req.method);
    PutOptBytes(o, 3, req.payload);
    if (req.timeout_nano != 0) {
      o.WriteTag(Tag(4, kVarint));
      o.WriteVarint64(static_cast<uint64_t>(req.timeout_nano));
    }
    for (const auto& [k, v] : req.metadata.entries()) {
      std::string kv = Encode([&](CodedOutputStream& ko) {
        PutOptBytes(ko, 1, k);
        PutOptBytes(ko, 2, v);
      });
      PutBytes(o, 5, kv);
    }
  });
}

Result<Request> DecodeRequest(std::string_view data) {
  Request req;
  bool ok = ForEachField(data, [&](CodedInputStream& in, uint32_t field, uint32_t wt) {
    switch (field) {
      case 1:
        if (wt == kBytes) return ReadBytes(in, &req.service) ? 1 : -1;
        break;
      case 2:
        if (wt == kBytes) return ReadBytes(in, &req.method) ? 1 : -1;
        break;
      case 3:
        if (wt == kBytes) return ReadBytes(in, &req.payload) ? 1 : -1;
        break;
      case 4:
        if (wt == kVarint) {
          uint64_t v;
          if (!in.ReadVarint64(&v)) return -1;
          req.timeout_nano = static_cast<int64_t>(v);
          return 1;
        }
        break;
      case 5:
        if (wt == kBytes) {
          std::string sub;
          Metadata::Entry kv;
          if (!ReadBytes(in, &sub) || !DecodeKeyValue(sub, &kv)) return -1;
          req.metadata.mutable_entries().push_back(std::move(kv));
          return 1;
        }
        break;
    }
    return 0;
  });
  if (!ok) return std::unexpected(Malformed("Request"));
  return req;
}

std::string EncodeResponse(const Response& resp) {
  return Encode([&](CodedOutputStream& o) {
    if (resp.status) {
      std::string st = Encode([&](CodedOutputStream& so) {
        if (resp.status->code != 0) {
          so.WriteTag(Tag(1, kVarint));
          // int32 is sign-extended to 64 bits on the wire, as protobuf does.
          so.WriteVarint64(static_cast<uint64_t>(static_cast<int64_t>(resp.status->code)));
        }
        PutOptBytes(so, 2, resp.status->message);
        for (const auto& d : resp.status->details) PutBytes(so, 3, d);
      });
      PutBytes(o, 1, st);
    }
    PutOptBytes(o, 2, resp.payload);
  });
}

std::string EncodeResponse(const Status& st, std::string_view payload) {
  Response resp;
  if (st.ok()) {
    resp.payload = std::string(payload);
  } else {
    resp.status = RpcStatus{static_cast<int32_t>(st.code()), st.message(), {}};
  }
  return EncodeResponse(resp);
}

Result<Response> DecodeResponse(std::string_view data) {
  Response resp;
  bool ok = ForEachField(data, [&](CodedInputStream& in, uint32_t field, uint32_t wt) {
    if (wt != kBytes) return 0;
    if (field == 1) {
      std::string sub;
      if (!ReadBytes(in, &sub)) return -1;
      if (!resp.status) resp.status.emplace();
      return DecodeRpcStatus(sub, &*resp.status) ? 1 : -1;  // repeated occurrences merge
    }
    if (field == 2) return ReadBytes(in, &resp.payload) ? 1 : -1;
    return 0;
  });
  if (!ok) return std::unexpected(Malformed("Response"));
  return resp;
}

Status StatusFromRpc(const RpcStatus& st) {
  if (st.code == 0) return Status::Ok();
  Code code = st.code > 0 && st.code <= static_cast<int32_t>(Code::kUnauthenticated)
                  ? static_cast<Code>(st.code)
                  : Code::kUnknown;
  return Status(code, st.message);
}

Status OversizedMessage(uint64_t length) {
  return Status(Code::kResourceExhausted, "message length " + std::to_string(length) +
                                              " exceed maximum message size of " +
                                              std::to_string(kMaxMessageSize));
}

void FrameReader::Feed(std::string_view data, std::vector<Event>* out) {
  while (!data.empty()) {
    switch (state_) {
      case State::kHeader: {
        size_t n = std::min(kHeaderSize - header_fill_, data.size());
        std::copy_n(data.data(), n, header_buf_ + header_fill_);
        header_fill_ += n;
        data.remove_prefix(n);
        if (header_fill_ < kHeaderSize) break;
        header_fill_ = 0;
        header_ = DecodeHeader(header_buf_);
        if (header_.length > kMaxMessageSize) {
          state_ = State::kDiscard;
          discard_left_ = header_.length;
        } else if (header_.length == 0) {
          out->push_back({false, header_, {}});
        } else {
          state_ = State::kPayload;
          payload_.assign(header_.length, '\0');
          payload_fill_ = 0;
        }
        break;
      }
      case State::kPayload: {
        size_t n = std::min(payload_.size() - payload_fill_, data.size());
        std::copy_n(data.data(), n, payload_.data() + payload_fill_);
        payload_fill_ += n;
        data.remove_prefix(n);
        if (payload_fill_ == payload_.size()) {
          out->push_back({false, header_, std::move(payload_)});
          payload_.clear();
          state_ = State::kHeader;
        }
        break;
      }
      case State::kDiscard: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(discard_left_, data.size()));
        discard_left_ -= n;
        data.remove_prefix(n);
        if (discard_left_ == 0) {
          out->push_back({true, header_, {}});
          state_ = State::kHeader;
        }
        break;
      }
    }
  }
}

}  // namespace berth::ttrpc
