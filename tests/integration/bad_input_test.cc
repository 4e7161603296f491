// Hostile or broken clients: garbage on the socket, oversized and malformed requests, bad
// filters, missing headers. berthd must answer with the right code and keep serving.
#include <gmock/gmock.h>
#include <google/protobuf/empty.pb.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "github.com/containerd/containerd/api/events/namespace.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/introspection/v1/introspection.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/namespaces/v1/namespace.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
namespace ev = containerd::services::events::v1;
namespace nsapi = containerd::services::namespaces::v1;
namespace intro = containerd::services::introspection::v1;

constexpr char kNamespaceHeader[] = "containerd-namespace";

// Connects to `path`, writes `bytes` (may be empty), reads whatever comes back for up to
// `linger` and closes. Returns false if it could not connect.
bool SendRaw(const std::string& path, const std::string& bytes,
             std::chrono::milliseconds linger = std::chrono::milliseconds(200)) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return false;
  }
  size_t off = 0;
  while (off < bytes.size()) {
    // MSG_NOSIGNAL: the server may hang up mid-write, which must not kill the test.
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  auto deadline = std::chrono::steady_clock::now() + linger;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[4096];
    if (::recv(fd, buf, sizeof buf, 0) <= 0) break;  // server closed: fine
  }
  ::close(fd);
  return true;
}

// An HTTP/2 frame header + payload.
std::string Frame(uint32_t len, uint8_t type, uint8_t flags, uint32_t stream,
                  const std::string& payload) {
  std::string f;
  f += static_cast<char>((len >> 16) & 0xff);
  f += static_cast<char>((len >> 8) & 0xff);
  f += static_cast<char>(len & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream >> 24) & 0x7f);
  f += static_cast<char>((stream >> 16) & 0xff);
  f += static_cast<char>((stream >> 8) & 0xff);
  f += static_cast<char>(stream & 0xff);
  return f + payload;
}

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

class BadInputTest : public DaemonTest {
 protected:
  std::shared_ptr<grpc::Channel> Channel() {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    return grpc::CreateCustomChannel("unix:" + socket_, grpc::InsecureChannelCredentials(), args);
  }

  static void Deadline(grpc::ClientContext* ctx, int seconds = 5) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }

  bool DaemonAlive() {
    if (daemon_pid_ < 0) return false;
    int status;
    return ::waitpid(daemon_pid_, &status, WNOHANG) == 0;
  }

  // The daemon is up and answers a real client.
  void ExpectServing(const std::string& after) {
    EXPECT_TRUE(DaemonAlive()) << "berthd died after " << after;
    RunResult r = Ctr({"version"});
    EXPECT_EQ(r.exit_code, 0) << "ctr version failed after " << after << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("UUID:")) << after;
  }

  std::string NsList() { return Ctr({"ns", "ls", "-q"}).out; }

  grpc::Status Publish(const char* ns, const std::string& topic, bool with_event) {
    auto stub = ev::Events::NewStub(Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx);
    if (ns) ctx.AddMetadata(kNamespaceHeader, ns);
    ev::PublishRequest req;
    req.set_topic(topic);
    if (with_event) {
      containerd::events::NamespaceCreate payload;
      payload.set_name("x");
      req.mutable_event()->set_type_url("containerd.events.NamespaceCreate");
      req.mutable_event()->set_value(payload.SerializeAsString());
    }
    google::protobuf::Empty empty;
    return stub->Publish(&ctx, req, &empty);
  }

  // A unary call whose request body is `body` verbatim (no protobuf encoding).
  grpc::Status RawUnary(const std::string& method, const std::string& body,
                        std::string* response = nullptr) {
    grpc::GenericStub stub(Channel());
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ctx.AddMetadata(kNamespaceHeader, "default");
    grpc::Slice slice(body);
    grpc::ByteBuffer req(&slice, 1), resp;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp,
                   [&](grpc::Status s) { done.set_value(std::move(s)); });
    grpc::Status s = done.get_future().get();
    if (response && s.ok()) {
      std::vector<grpc::Slice> slices;
      (void)resp.Dump(&slices);
      response->clear();
      for (const auto& sl : slices) response->append(sl.begin(), sl.end());
    }
    return s;
  }
};

TEST_F(BadInputTest, GarbageOnTheSocketDoesNotHurtTheDaemon) {
  std::mt19937 rng(20230406);
  std::string random(64 * 1024, '\0');
  for (char& c : random) c = static_cast<char>(rng());

  struct Case {
    const char* name;
    std::string bytes;
  };
  const std::string preface(kPreface);
  const Case cases[] = {
      {"connect and close", ""},
      {"random bytes", random},
      {"HTTP/1.1 request",
       "GET /containerd.services.version.v1.Version/Version HTTP/1.1\r\n"
       "Host: localhost\r\nContent-Length: 5\r\n\r\nhello"},
      {"truncated HTTP/2 preface", preface.substr(0, 10)},
      {"preface, then a frame claiming 16 MiB", preface + Frame(0xffffff, 0x0, 0x0, 1, "short")},
      {"preface, then an unknown frame type and a bad SETTINGS",
       preface + Frame(3, 0xee, 0, 0, "abc") + Frame(5, 0x4, 0, 0, "12345")},
      {"preface, then HEADERS with garbage HPACK",
       preface + Frame(0, 0x4, 0, 0, "") +
           Frame(8, 0x1, 0x5, 1, "\xff\xff\xff\xff\xff\xff\xff\xff")},
      {"preface, then DATA on a stream never opened",
       preface + Frame(0, 0x4, 0, 0, "") + Frame(5, 0x0, 0x1, 3, std::string("\0\0\0\0\0", 5))},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(SendRaw(socket_, c.bytes)) << c.name;
    ExpectServing(c.name);
  }
}

TEST_F(BadInputTest, StalledConnectionsDoNotBlockOtherClients) {
  // Clients that connect, send half a preface and then go quiet.
  std::vector<int> fds;
  for (int i = 0; i < 32; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_GT(::send(fd, kPreface, 7, MSG_NOSIGNAL), 0);
  }
  // Blocked by them, `ctr version` would time out and ExpectServing fail: no clock needed.
  ExpectServing("32 stalled connections");
  for (int fd : fds) ::close(fd);
  ExpectServing("closing the stalled connections");
}

TEST_F(BadInputTest, OversizedLabelThroughCtrIsInvalidArgument) {
  ASSERT_EQ(Ctr({"ns", "create", "keep", "k=v"}).exit_code, 0);
  const std::string before = NsList();

  // 5000 bytes > 4096 (key + value); the text is containerd's.
  RunResult r = Ctr({"ns", "create", "big", "x=" + std::string(5000, 'v')});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "ctr: namespace.Labels: label key and value greater than maximum size (4096 "
            "bytes), key: x: invalid argument\n");
  EXPECT_EQ(NsList(), before);

  // Through Update too; containerd answers Unknown there, we answer InvalidArgument.
  r = Ctr({"ns", "label", "keep", "k=" + std::string(5000, 'v')});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("greater than maximum size (4096 bytes), key: k"));
  EXPECT_THAT(r.err, HasSubstr(": invalid argument\n"));
  EXPECT_EQ(Ctr({"ns", "ls"}).out, "NAME LABELS \nkeep k=v    \n");

  // Exactly 4096 bytes is allowed.
  r = Ctr({"ns", "create", "edge", "k=" + std::string(4095, 'v')});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BadInputTest, OneMegabyteLabelOverGrpcIsInvalidArgument) {
  auto stub = nsapi::Namespaces::NewStub(Channel());
  const std::string before = NsList();
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ctx.AddMetadata(kNamespaceHeader, "default");
    nsapi::CreateNamespaceRequest req;
    req.mutable_namespace_()->set_name("big");
    (*req.mutable_namespace_()->mutable_labels())["x"] = std::string(1 << 20, 'v');
    nsapi::CreateNamespaceResponse resp;
    grpc::Status s = stub->Create(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("label key and value greater than maximum size"));
  }
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ctx.AddMetadata(kNamespaceHeader, "default");
    nsapi::UpdateNamespaceRequest req;
    req.mutable_namespace_()->set_name("big");
    (*req.mutable_namespace_()->mutable_labels())["x"] = std::string(1 << 20, 'v');
    req.mutable_update_mask()->add_paths("labels.x");
    nsapi::UpdateNamespaceResponse resp;
    grpc::Status s = stub->Update(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  EXPECT_EQ(NsList(), before) << "nothing may be created by a rejected request";
  ExpectServing("1 MiB labels");
}

TEST_F(BadInputTest, MessageOverSixteenMiBIsResourceExhausted) {
  auto stub = nsapi::Namespaces::NewStub(Channel());
  grpc::ClientContext ctx;
  Deadline(&ctx, 10);
  ctx.AddMetadata(kNamespaceHeader, "default");
  nsapi::CreateNamespaceRequest req;
  req.mutable_namespace_()->set_name("huge");
  (*req.mutable_namespace_()->mutable_labels())["x"] = std::string(17 << 20, 'v');
  nsapi::CreateNamespaceResponse resp;
  grpc::Status s = stub->Create(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(NsList(), "");
  ExpectServing("a 17 MiB request");
}

TEST_F(BadInputTest, BadFiltersAreInvalidArgumentAndDaemonKeepsServing) {
  // ctr prints the parser's message. (containerd's introspection wraps it twice, so ctr
  // prints one more ": invalid argument" there; the code is the same.)
  RunResult r = Ctr({"plugins", "ls", "type=="});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, ::testing::StartsWith("ctr: filters: parse error: [type==]: expected value "
                                           "or quoted: invalid argument"));
  r = Ctr({"plugins", "ls", "id=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("unsupported operator \"=\""));

  // A subscription with a bad filter ends at once (containerd: Unknown; we: InvalidArgument).
  r = berth::testing::Run({"/usr/bin/ctr", "--address", socket_, "events", "topic=="}, "", 5);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("code = InvalidArgument"));
  EXPECT_THAT(r.err, HasSubstr("parse error: [topic==]: expected value or quoted"));

  auto channel = Channel();
  for (const char* bad : {"a.", "id==x,", "id==\"unterminated", ",", "id==a b"}) {
    {
      grpc::ClientContext ctx;
      Deadline(&ctx);
      intro::PluginsRequest req;
      req.add_filters("id==version");  // a good one alongside does not rescue it
      req.add_filters(bad);
      intro::PluginsResponse resp;
      grpc::Status s = intro::Introspection::NewStub(channel)->Plugins(&ctx, req, &resp);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
      EXPECT_THAT(s.error_message(), HasSubstr("filters: parse error")) << bad;
    }
    {
      grpc::ClientContext ctx;
      Deadline(&ctx);
      ev::SubscribeRequest req;
      req.add_filters(bad);
      auto reader = ev::Events::NewStub(channel)->Subscribe(&ctx, req);
      ev::Envelope env;
      EXPECT_FALSE(reader->Read(&env)) << bad;
      grpc::Status s = reader->Finish();
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    }
  }
  ExpectServing("bad filters");
}

TEST_F(BadInputTest, PublishNeedsAValidNamespaceTopicAndEvent) {
  grpc::Status s = Publish(nullptr, "/test/topic", true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("namespace is required"));

  s = Publish("", "/test/topic", true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  s = Publish("bad name", "/test/topic", true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("identifier \"bad name\""));

  for (const char* topic : {"", "no/slash", "/", "/a//b", "/bad topic"}) {
    s = Publish("default", topic, true);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << topic;
  }
  // containerd 1.6.20 crashes (nil dereference) on this one; we refuse it.
  s = Publish("default", "/test/topic", false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_TRUE(Publish("default", "/test/topic", true).ok());
  ExpectServing("invalid publishes");
}

TEST_F(BadInputTest, ForwardNeedsACompleteEnvelope) {
  auto stub = ev::Events::NewStub(Channel());
  auto forward = [&](auto&& fill) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ev::ForwardRequest req;
    auto* env = req.mutable_envelope();
    env->set_namespace_("default");
    env->set_topic("/test/forward");
    env->mutable_timestamp()->set_seconds(1700000000);
    env->mutable_event()->set_type_url("containerd.events.NamespaceDelete");
    fill(env);
    google::protobuf::Empty empty;
    return stub->Forward(&ctx, req, &empty);
  };
  EXPECT_TRUE(forward([](ev::Envelope*) {}).ok());
  EXPECT_EQ(forward([](ev::Envelope* e) { e->clear_namespace_(); }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(forward([](ev::Envelope* e) { e->set_topic("nope"); }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // containerd checks only namespace, topic and timestamp (issue 12 item 11).
  EXPECT_TRUE(forward([](ev::Envelope* e) { e->clear_event(); }).ok());
  grpc::Status s = forward([](ev::Envelope* e) { e->clear_timestamp(); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("timestamp must be set"));
}

TEST_F(BadInputTest, MalformedProtobufBodiesAreRejectedAndNothingChanges) {
  ASSERT_EQ(Ctr({"ns", "create", "keep"}).exit_code, 0);
  const std::string create = "/containerd.services.namespaces.v1.Namespaces/Create";
  struct Case {
    const char* name;
    std::string method, body;
  };
  const Case cases[] = {
      {"invalid wire type", create, "\xff\xff\xff\xff\x0f garbage"},
      {"truncated length-delimited field", create, std::string("\x0a\x10\x0a\x05", 4)},
      {"varint running off the end", "/containerd.services.events.v1.Events/Publish",
       "\x12\xff\xff\xff\xff\x0f"},
      {"random bytes", "/containerd.services.namespaces.v1.Namespaces/Delete",
       std::string("\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11)},
  };
  for (const Case& c : cases) {
    grpc::Status s = RawUnary(c.method, c.body);
    // gRPC answers INTERNAL when the request does not deserialize (so does containerd's).
    EXPECT_TRUE(s.error_code() == grpc::StatusCode::INTERNAL ||
                s.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << s.error_code() << " " << s.error_message();
  }
  EXPECT_EQ(NsList(), "keep\n");

  grpc::Status s = RawUnary("/containerd.services.namespaces.v1.Namespaces/Nope", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  s = RawUnary("/no.such.Service/Method", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);

  // A well-formed raw body still works: Get{name:"keep"} on the same path.
  std::string out;
  s = RawUnary("/containerd.services.namespaces.v1.Namespaces/Get", std::string("\x0a\x04keep", 6),
               &out);
  EXPECT_TRUE(s.ok()) << s.error_message();
  nsapi::GetNamespaceResponse resp;
  ASSERT_TRUE(resp.ParseFromString(out));
  EXPECT_EQ(resp.namespace_().name(), "keep");
  ExpectServing("malformed bodies");
}

}  // namespace
}  // namespace berth::testing
