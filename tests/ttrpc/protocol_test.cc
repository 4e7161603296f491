// Wire format: golden bytes as Go's protobuf runtime writes them, tolerant decoding, and the
// frame reader under arbitrary splits.
#include "ttrpc/protocol.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace berth::ttrpc {
namespace {

using std::string_literals::operator""s;

TEST(ProtocolTest, HeaderIsBigEndian) {
  char buf[kHeaderSize];
  EncodeHeader({0x01020304, 0x05060708, 2, 9}, buf);
  EXPECT_EQ(std::string(buf, kHeaderSize), "\x01\x02\x03\x04\x05\x06\x07\x08\x02\x09"s);
  FrameHeader h = DecodeHeader("\xff\x00\x00\x01\x80\x00\x00\x03\x01\x00");
  EXPECT_EQ(h.length, 0xff000001u);
  EXPECT_EQ(h.stream_id, 0x80000003u);
  EXPECT_EQ(h.type, 1);
  EXPECT_EQ(h.flags, 0);
}

TEST(ProtocolTest, RequestGoldenBytes) {
  Request req;
  req.service = "s";
  req.method = "m";
  req.payload = "p";
  req.timeout_nano = 1;
  req.metadata.Add("k", "v");
  EXPECT_EQ(EncodeRequest(req), "\x0a\x01s\x12\x01m\x1a\x01p\x20\x01\x2a\x06\x0a\x01k\x12\x01v"s);
  // proto3: zero values are not written at all.
  EXPECT_EQ(EncodeRequest(Request{}), "");
  // A negative timeout is a 10-byte varint, as Go writes int64.
  Request neg;
  neg.timeout_nano = -1;
  EXPECT_EQ(EncodeRequest(neg), "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s);
}

TEST(ProtocolTest, ResponseGoldenBytes) {
  // OK: no status field (grpc-go's Status.Proto() of OK is nil), payload only if non-empty.
  EXPECT_EQ(EncodeResponse(Status::Ok(), ""), "");
  EXPECT_EQ(EncodeResponse(Status::Ok(), "x"), "\x12\x01x"s);
  // Error: status {code, message}, no payload.
  EXPECT_EQ(EncodeResponse(NotFound("nf"), "ignored"), "\x0a\x06\x08\x05\x12\x02nf"s);
}

TEST(ProtocolTest, RequestRoundTrip) {
  Request req;
  req.service = "containerd.task.v2.Task";
  req.method = "Create";
  req.payload = std::string("\0\x01\x02", 3);
  req.timeout_nano = 5'000'000'000;
  req.metadata.Add("containerd-namespace-ttrpc", "default");
  req.metadata.Add("x", "1");
  req.metadata.Add("x", "2");
  auto back = DecodeRequest(EncodeRequest(req));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->service, req.service);
  EXPECT_EQ(back->method, req.method);
  EXPECT_EQ(back->payload, req.payload);
  EXPECT_EQ(back->timeout_nano, req.timeout_nano);
  EXPECT_EQ(back->metadata, req.metadata);
  EXPECT_EQ(back->metadata.GetAll("X"), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(back->metadata.Get("containerd-namespace-ttrpc"), "default");
}

TEST(ProtocolTest, ResponseRoundTripAndCodes) {
  auto r = DecodeResponse(EncodeResponse(Status(Code::kUnimplemented, "method Nope"), ""));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->status.has_value());
  EXPECT_EQ(StatusFromRpc(*r->status), Status(Code::kUnimplemented, "method Nope"));

  RpcStatus odd{99, "from the future", {}};
  EXPECT_EQ(StatusFromRpc(odd).code(), Code::kUnknown);
  RpcStatus neg{-3, "negative", {}};
  Response resp{neg, ""};
  auto back = DecodeResponse(EncodeResponse(resp));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->status->code, -3);
  EXPECT_EQ(StatusFromRpc(*back->status).code(), Code::kUnknown);

  // Details (google.protobuf.Any) survive decoding untouched.
  Response with_details{RpcStatus{5, "nf", {"\x0a\x01t"s}}, ""};
  back = DecodeResponse(EncodeResponse(with_details));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->status->details, std::vector<std::string>{"\x0a\x01t"s});
}

TEST(ProtocolTest, DecodeSkipsUnknownFieldsAndWrongWireTypes) {
  // field 9 varint, field 10 fixed64, field 11 fixed32, field 12 bytes, field 13 group, then
  // field 1 sent as a varint (wrong type: skipped like Go), then the real service.
  std::string data = "\x48\x07"s + "\x51" + std::string(8, 'a') + "\x5d" + std::string(4, 'b') +
                     "\x62\x02zz" + "\x6b\x08\x01\x6c" + "\x08\x05" + "\x0a\x03svc";
  auto req = DecodeRequest(data);
  ASSERT_TRUE(req.has_value()) << req.error().ToString();
  EXPECT_EQ(req->service, "svc");
}

TEST(ProtocolTest, DecodeRejectsMalformed) {
  const std::vector<std::string> bad = {
      "\x0a"s,                      // tag without length
      "\x0a\x05sv"s,                // length past the end
      "\x0a\xff\xff\xff\xff\x0f"s,  // huge length
      "\x20\xff\xff\xff"s,          // truncated varint
      "\x00\x01"s,                  // field number 0
      "\x0c"s,                      // end-group without start
      "\x0e\x00"s,                  // wire type 6
      "\x2a\x03\x0a\x05k"s,         // metadata entry with a bad inner length
      "\x6b\x08\x01"s,              // group never closed
  };
  for (const auto& b : bad) {
    auto r = DecodeRequest(b);
    EXPECT_FALSE(r.has_value()) << "accepted: " << ::testing::PrintToString(b);
    if (!r) {
      EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    }
  }
  EXPECT_FALSE(DecodeResponse("\x0a\x02\x08"s).has_value());
}

TEST(ProtocolTest, MetadataKeysAreLowerCasedLikeGoMD) {
  Metadata md;
  md.Add("Containerd-Namespace", "a");
  md.Set("CONTAINERD-NAMESPACE", "b");
  EXPECT_EQ(md.entries().size(), 1u);
  EXPECT_EQ(md.entries()[0].first, "containerd-namespace");
  EXPECT_EQ(md.Get("Containerd-namespace"), "b");
  EXPECT_FALSE(md.Get("other").has_value());
}

TEST(ProtocolTest, FrameReaderHandlesAnySplit) {
  std::string stream = MakeFrame(1, MessageType::kRequest, "hello") +
                       MakeFrame(3, MessageType::kRequest, "") +
                       MakeFrame(5, MessageType::kResponse, std::string(70000, 'z'));
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{10}, size_t{4096}, stream.size()}) {
    FrameReader reader;
    std::vector<FrameReader::Event> out;
    for (size_t off = 0; off < stream.size(); off += chunk) {
      reader.Feed(std::string_view(stream).substr(off, chunk), &out);
    }
    ASSERT_EQ(out.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(out[0].header.stream_id, 1u);
    EXPECT_EQ(out[0].payload, "hello");
    EXPECT_EQ(out[1].header.stream_id, 3u);
    EXPECT_EQ(out[1].payload, "");
    EXPECT_EQ(out[2].header.type, 2);
    EXPECT_EQ(out[2].payload.size(), 70000u);
    EXPECT_FALSE(reader.mid_frame());
  }
}

TEST(ProtocolTest, FrameReaderDiscardsOversizedThenContinues) {
  FrameReader reader;
  std::vector<FrameReader::Event> out;
  char h[kHeaderSize];
  EncodeHeader({kMaxMessageSize + 1, 7, 1, 0}, h);
  reader.Feed(std::string_view(h, kHeaderSize), &out);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(reader.mid_frame());
  std::string body(kMaxMessageSize + 1, 'x');
  reader.Feed(std::string_view(body).substr(0, 1000), &out);
  EXPECT_TRUE(out.empty());
  reader.Feed(std::string_view(body).substr(1000), &out);
  reader.Feed(MakeFrame(9, MessageType::kRequest, "next"), &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].oversized);
  EXPECT_EQ(out[0].header.stream_id, 7u);
  EXPECT_EQ(out[0].header.length, kMaxMessageSize + 1);
  EXPECT_FALSE(out[1].oversized);
  EXPECT_EQ(out[1].payload, "next");
  // A frame of exactly the limit is fine.
  FrameReader r2;
  out.clear();
  r2.Feed(MakeFrame(1, MessageType::kRequest, std::string(kMaxMessageSize, 'y')), &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].oversized);
}

TEST(ProtocolTest, OversizedMessageWording) {
  EXPECT_EQ(OversizedMessage(5242880),
            Status(Code::kResourceExhausted,
                   "message length 5242880 exceed maximum message size of 4194304"));
}

}  // namespace
}  // namespace berth::ttrpc
