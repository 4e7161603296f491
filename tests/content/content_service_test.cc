// The Content gRPC adapter, in process: the Write stream protocol of compat §4.2 in the cases
// ctr never exercises (wrong offsets, restarts, concurrent commits), Read ranges, List batches,
// headers and events.
#include "services/content_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "content/digest.h"
#include "content/local/store.h"
#include "github.com/containerd/containerd/api/events/content.pb.h"
#include "test_util.h"

namespace berth::services {
namespace {

namespace api = containerd::services::content::v1;
using content::DigestOf;
using content::testing::Bytes;
using content::testing::TempDir;

class RecordingGc final : public metadata::GcTrigger {
 public:
  void Trigger(bool wait) override {
    ++triggers;
    waited = waited || wait;
  }
  int triggers = 0;
  bool waited = false;
};

class ContentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = metadata::Db::Open(dir_.path() + "/meta.db");
    ASSERT_TRUE(db.has_value());
    db_ = std::move(*db);
    auto local = content::LocalStore::Open(dir_.path() + "/content");
    ASSERT_TRUE(local.has_value());
    local_ = std::move(*local);
    local_->SetLockAttemptsForTest(1);
    store_ = std::make_unique<metadata::ContentStore>(*db_, *local_);
    service_ = std::make_unique<ContentService>(*store_, exchange_, gc_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(16 << 20);
    builder.SetMaxSendMessageSize(16 << 20);
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(16 << 20);
    stub_ = api::Content::NewStub(server_->InProcessChannel(args));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& ns = "default",
                                           const std::string& lease = "") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!ns.empty()) ctx->AddMetadata("containerd-namespace", ns);
    if (!lease.empty()) ctx->AddMetadata("containerd-lease", lease);
    return ctx;
  }

  using Stream = grpc::ClientReaderWriter<api::WriteContentRequest, api::WriteContentResponse>;

  // One request, one response — the way the Go client drives the stream.
  static bool Send(Stream* s, const api::WriteContentRequest& req,
                   api::WriteContentResponse* resp) {
    return s->Write(req) && s->Read(resp);
  }

  static api::WriteContentRequest Req(api::WriteAction action, int64_t offset = 0,
                                      const std::string& data = "") {
    api::WriteContentRequest r;
    r.set_action(action);
    r.set_offset(offset);
    r.set_data(data);
    return r;
  }

  // Full ingest through the Write stream, as content.Copy does it.
  grpc::Status Ingest(const std::string& ns, const std::string& ref, const std::string& data,
                      std::map<std::string, std::string> labels = {}) {
    auto ctx = Ctx(ns);
    auto s = stub_->Write(ctx.get());
    api::WriteContentRequest stat = Req(api::STAT);
    stat.set_ref(ref);
    stat.set_total(static_cast<int64_t>(data.size()));
    stat.set_expected(DigestOf(data));
    api::WriteContentResponse resp;
    if (!Send(s.get(), stat, &resp)) return s->Finish();
    int64_t off = resp.offset();
    while (off < static_cast<int64_t>(data.size())) {
      size_t n = std::min<size_t>(1 << 20, data.size() - off);
      if (!Send(s.get(), Req(api::WRITE, off, data.substr(off, n)), &resp)) return s->Finish();
      off = resp.offset();
    }
    api::WriteContentRequest commit = Req(api::COMMIT, off);
    commit.set_total(static_cast<int64_t>(data.size()));
    commit.set_expected(DigestOf(data));
    for (const auto& [k, v] : labels) (*commit.mutable_labels())[k] = v;
    if (!Send(s.get(), commit, &resp)) return s->Finish();
    EXPECT_EQ(resp.digest(), DigestOf(data));
    EXPECT_EQ(resp.offset(), static_cast<int64_t>(data.size()));
    s->WritesDone();
    return s->Finish();
  }

  TempDir dir_;
  std::unique_ptr<metadata::Db> db_;
  std::unique_ptr<content::LocalStore> local_;
  std::unique_ptr<metadata::ContentStore> store_;
  events::Exchange exchange_;
  RecordingGc gc_;
  std::unique_ptr<ContentService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<api::Content::Stub> stub_;
};

TEST_F(ContentServiceTest, WriteStatWriteCommit) {
  std::string data = Bytes(2500000);
  auto ctx = Ctx();
  auto s = stub_->Write(ctx.get());
  api::WriteContentRequest stat = Req(api::STAT);
  stat.set_ref("layer");
  stat.set_total(static_cast<int64_t>(data.size()));
  stat.set_expected(DigestOf(data));
  api::WriteContentResponse resp;
  ASSERT_TRUE(Send(s.get(), stat, &resp));
  EXPECT_EQ(resp.action(), api::STAT);
  EXPECT_EQ(resp.offset(), 0);
  EXPECT_EQ(resp.total(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(resp.digest(), DigestOf(""));
  EXPECT_GT(resp.started_at().seconds(), 0);

  ASSERT_TRUE(Send(s.get(), Req(api::WRITE, 0, data.substr(0, 1 << 20)), &resp));
  EXPECT_EQ(resp.action(), api::WRITE);
  EXPECT_EQ(resp.offset(), 1 << 20);
  EXPECT_EQ(resp.digest(), DigestOf(data.substr(0, 1 << 20)));

  // Status of the active ingest, seen from another call.
  api::StatusRequest sreq;
  sreq.set_ref("layer");
  api::StatusResponse sresp;
  ASSERT_TRUE(stub_->Status(Ctx().get(), sreq, &sresp).ok());
  EXPECT_EQ(sresp.status().offset(), 1 << 20);
  EXPECT_EQ(sresp.status().total(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(sresp.status().ref(), "layer");

  ASSERT_TRUE(Send(s.get(), Req(api::WRITE, 1 << 20, data.substr(1 << 20, 1 << 20)), &resp));
  api::WriteContentRequest commit = Req(api::COMMIT, 2 << 20, data.substr(2 << 20));
  commit.set_total(static_cast<int64_t>(data.size()));
  commit.set_expected(DigestOf(data));
  (*commit.mutable_labels())["containerd.io/distribution.source.x"] = "y";
  ASSERT_TRUE(Send(s.get(), commit, &resp));
  EXPECT_EQ(resp.action(), api::COMMIT);
  EXPECT_EQ(resp.offset(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(resp.digest(), DigestOf(data));
  s->WritesDone();
  EXPECT_FALSE(s->Read(&resp));  // the server ends the stream after COMMIT
  ASSERT_TRUE(s->Finish().ok());

  api::InfoRequest ireq;
  ireq.set_digest(DigestOf(data));
  api::InfoResponse iresp;
  ASSERT_TRUE(stub_->Info(Ctx().get(), ireq, &iresp).ok());
  EXPECT_EQ(iresp.info().size(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(iresp.info().labels().at("containerd.io/distribution.source.x"), "y");
  EXPECT_EQ(stub_->Status(Ctx().get(), sreq, &sresp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ContentServiceTest, WriteProtocolErrors) {
  {  // first message without a ref
    auto ctx = Ctx();
    auto s = stub_->Write(ctx.get());
    api::WriteContentResponse resp;
    s->Write(Req(api::STAT));
    EXPECT_FALSE(s->Read(&resp));
    EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // no namespace
    auto ctx = Ctx("");
    auto s = stub_->Write(ctx.get());
    api::WriteContentRequest r = Req(api::STAT);
    r.set_ref("x");
    api::WriteContentResponse resp;
    s->Write(r);
    EXPECT_FALSE(s->Read(&resp));
    EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  {  // a write at the wrong offset
    auto ctx = Ctx();
    auto s = stub_->Write(ctx.get());
    api::WriteContentRequest r = Req(api::STAT);
    r.set_ref("off");
    api::WriteContentResponse resp;
    ASSERT_TRUE(Send(s.get(), r, &resp));
    ASSERT_TRUE(Send(s.get(), Req(api::WRITE, 0, "abc"), &resp));
    EXPECT_FALSE(Send(s.get(), Req(api::WRITE, 7, "def"), &resp));
    grpc::Status st = s->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);
    EXPECT_NE(st.error_message().find("current offset 3"), std::string::npos);
  }
  {  // the ingest survived the error; offset 0 with data present restarts it
    auto ctx = Ctx();
    auto s = stub_->Write(ctx.get());
    api::WriteContentRequest r = Req(api::STAT);
    r.set_ref("off");
    api::WriteContentResponse resp;
    ASSERT_TRUE(Send(s.get(), r, &resp));
    EXPECT_EQ(resp.offset(), 3);
    EXPECT_EQ(resp.digest(), DigestOf("abc"));
    ASSERT_TRUE(Send(s.get(), Req(api::WRITE, 0, "xy"), &resp));
    EXPECT_EQ(resp.offset(), 2);
    api::WriteContentRequest commit = Req(api::COMMIT, 2);
    commit.set_expected(DigestOf("wrong"));
    EXPECT_FALSE(Send(s.get(), commit, &resp));
    grpc::Status st = s->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(st.error_message().find(DigestOf("xy")), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find(DigestOf("wrong")), std::string::npos);
  }
  {  // size mismatch at commit
    auto ctx = Ctx();
    auto s = stub_->Write(ctx.get());
    api::WriteContentRequest r = Req(api::STAT);
    r.set_ref("off");
    api::WriteContentResponse resp;
    ASSERT_TRUE(Send(s.get(), r, &resp));
    api::WriteContentRequest commit = Req(api::COMMIT, 2);
    commit.set_total(3);
    EXPECT_FALSE(Send(s.get(), commit, &resp));
    EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  api::ListContentRequest lreq;
  auto list_ctx = Ctx();
  auto list = stub_->List(list_ctx.get(), lreq);
  api::ListContentResponse lresp;
  EXPECT_FALSE(list->Read(&lresp));  // nothing was committed
}

TEST_F(ContentServiceTest, SecondWriterIsUnavailable) {
  auto ctx1 = Ctx();
  auto s1 = stub_->Write(ctx1.get());
  api::WriteContentRequest r = Req(api::STAT);
  r.set_ref("busy");
  api::WriteContentResponse resp;
  ASSERT_TRUE(Send(s1.get(), r, &resp));
  auto ctx2 = Ctx();
  auto s2 = stub_->Write(ctx2.get());
  EXPECT_FALSE(Send(s2.get(), r, &resp));
  grpc::Status st = s2->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(st.error_message().find("locked"), std::string::npos);
  // Client EOF leaves the ingest resumable and unlocks it.
  s1->WritesDone();
  EXPECT_TRUE(s1->Finish().ok());
  auto ctx3 = Ctx();
  auto s3 = stub_->Write(ctx3.get());
  EXPECT_TRUE(Send(s3.get(), r, &resp));
}

TEST_F(ContentServiceTest, ExpectedCommittedMeanwhileIsAlreadyExists) {
  std::string data = "racing blob";
  auto ctx = Ctx();
  auto s = stub_->Write(ctx.get());
  api::WriteContentRequest r = Req(api::STAT);
  r.set_ref("slow");
  r.set_expected(DigestOf(data));
  api::WriteContentResponse resp;
  ASSERT_TRUE(Send(s.get(), r, &resp));
  ASSERT_TRUE(Send(s.get(), Req(api::WRITE, 0, "racing"), &resp));
  ASSERT_TRUE(Ingest("default", "fast", data).ok());
  api::WriteContentRequest commit = Req(api::COMMIT, 6, " blob");
  commit.set_expected(DigestOf(data));
  EXPECT_FALSE(Send(s.get(), commit, &resp));
  EXPECT_EQ(s->Finish().error_code(), grpc::StatusCode::ALREADY_EXISTS);
  // The losing ingest was aborted.
  api::ListStatusesRequest lreq;
  lreq.add_filters("");
  api::ListStatusesResponse lresp;
  ASSERT_TRUE(stub_->ListStatuses(Ctx().get(), lreq, &lresp).ok());
  EXPECT_EQ(lresp.statuses_size(), 0);
  // Opening a writer for it now is AlreadyExists straight away.
  auto ctx2 = Ctx();
  auto s2 = stub_->Write(ctx2.get());
  r.set_ref("late");
  EXPECT_FALSE(Send(s2.get(), r, &resp));
  EXPECT_EQ(s2->Finish().error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(ContentServiceTest, SharedBlobAcrossNamespaces) {
  std::string data = Bytes(4096);
  ASSERT_TRUE(Ingest("ns1", "a", data).ok());
  auto ctx = Ctx("ns2");
  auto s = stub_->Write(ctx.get());
  api::WriteContentRequest r = Req(api::STAT);
  r.set_ref("b");
  r.set_expected(DigestOf(data));
  r.set_total(4096);
  api::WriteContentResponse resp;
  ASSERT_TRUE(Send(s.get(), r, &resp));
  EXPECT_EQ(resp.offset(), 4096);
  EXPECT_EQ(resp.total(), 4096);
  api::WriteContentRequest commit = Req(api::COMMIT, 4096);
  commit.set_total(4096);
  commit.set_expected(DigestOf(data));
  ASSERT_TRUE(Send(s.get(), commit, &resp));
  EXPECT_EQ(resp.offset(), 4096);
  EXPECT_EQ(resp.digest(), DigestOf(data));
  EXPECT_TRUE(s->Finish().ok());
  api::InfoRequest ireq;
  ireq.set_digest(DigestOf(data));
  api::InfoResponse iresp;
  EXPECT_TRUE(stub_->Info(Ctx("ns2").get(), ireq, &iresp).ok());
}

TEST_F(ContentServiceTest, ReadRanges) {
  std::string data = Bytes((3 << 20) + 123, 5);
  ASSERT_TRUE(Ingest("default", "r", data).ok());
  auto read = [&](int64_t offset, int64_t size, grpc::Status* st) {
    api::ReadContentRequest req;
    req.set_digest(DigestOf(data));
    req.set_offset(offset);
    req.set_size(size);
    auto ctx = Ctx();
    auto r = stub_->Read(ctx.get(), req);
    std::string out;
    api::ReadContentResponse resp;
    while (r->Read(&resp)) {
      EXPECT_LE(resp.data().size(), 1u << 20);
      EXPECT_EQ(resp.offset(), std::max<int64_t>(offset, 0) + static_cast<int64_t>(out.size()));
      out += resp.data();
    }
    *st = r->Finish();
    return out;
  };
  grpc::Status st;
  EXPECT_EQ(read(0, 0, &st), data);
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(read(100, 50, &st), data.substr(100, 50));
  EXPECT_EQ(read(data.size() - 10, 1000, &st), data.substr(data.size() - 10));
  EXPECT_EQ(read(5, -1, &st), data.substr(5));
  EXPECT_EQ(read(-5, 3, &st), data.substr(0, 3));
  EXPECT_EQ(read(data.size(), 0, &st), "");
  EXPECT_TRUE(st.ok());
  read(data.size() + 1, 0, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);

  api::ReadContentRequest req;
  req.set_digest("sha256:../../etc/passwd");
  auto ctx = Ctx();
  auto r = stub_->Read(ctx.get(), req);
  api::ReadContentResponse resp;
  EXPECT_FALSE(r->Read(&resp));
  EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_digest(DigestOf("absent"));
  auto ctx2 = Ctx();
  auto r2 = stub_->Read(ctx2.get(), req);
  EXPECT_FALSE(r2->Read(&resp));
  EXPECT_EQ(r2->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ContentServiceTest, ListInBatchesOfAHundred) {
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(Ingest("default", "b" + std::to_string(i), "blob " + std::to_string(i)).ok());
  }
  api::ListContentRequest req;
  auto ctx = Ctx();
  auto r = stub_->List(ctx.get(), req);
  api::ListContentResponse resp;
  std::vector<int> sizes;
  while (r->Read(&resp)) sizes.push_back(resp.info_size());
  EXPECT_TRUE(r->Finish().ok());
  EXPECT_EQ(sizes, (std::vector<int>{100, 50}));
  api::ListContentRequest bad;
  bad.add_filters("labels.x==");
  auto ctx2 = Ctx();
  auto r2 = stub_->List(ctx2.get(), bad);
  EXPECT_FALSE(r2->Read(&resp));
  EXPECT_EQ(r2->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ContentServiceTest, UpdateDeleteAbort) {
  ASSERT_TRUE(Ingest("default", "u", "update me").ok());
  api::UpdateRequest ureq;
  ureq.mutable_info()->set_digest(DigestOf("update me"));
  (*ureq.mutable_info()->mutable_labels())["a"] = "1";
  ureq.mutable_update_mask()->add_paths("labels.a");
  api::UpdateResponse uresp;
  ASSERT_TRUE(stub_->Update(Ctx().get(), ureq, &uresp).ok());
  EXPECT_EQ(uresp.info().labels().at("a"), "1");
  EXPECT_EQ(uresp.info().size(), 9);
  ureq.mutable_update_mask()->add_paths("size");
  EXPECT_EQ(stub_->Update(Ctx().get(), ureq, &uresp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  auto sub = exchange_.Subscribe({});
  api::DeleteContentRequest dreq;
  dreq.set_digest(DigestOf("update me"));
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub_->Delete(Ctx().get(), dreq, &empty).ok());
  EXPECT_EQ(gc_.triggers, 1);
  auto ev = sub->Next(std::chrono::seconds(1));
  ASSERT_TRUE(ev.has_value() && ev->has_value());
  EXPECT_EQ((*ev)->topic, "/content/delete");
  EXPECT_EQ((*ev)->ns, "default");
  EXPECT_EQ((*ev)->type_url, "containerd.events.ContentDelete");
  containerd::events::ContentDelete payload;
  ASSERT_TRUE(payload.ParseFromString((*ev)->payload));
  EXPECT_EQ(payload.digest(), DigestOf("update me"));
  exchange_.Unsubscribe(sub);
  EXPECT_EQ(stub_->Delete(Ctx().get(), dreq, &empty).error_code(), grpc::StatusCode::NOT_FOUND);
  dreq.set_digest("sha256:zz");
  EXPECT_EQ(stub_->Delete(Ctx().get(), dreq, &empty).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  api::AbortRequest areq;
  areq.set_ref("never");
  EXPECT_EQ(stub_->Abort(Ctx().get(), areq, &empty).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    auto ctx = Ctx();
    auto s = stub_->Write(ctx.get());
    api::WriteContentRequest r = Req(api::STAT);
    r.set_ref("half");
    api::WriteContentResponse resp;
    ASSERT_TRUE(Send(s.get(), r, &resp));
    ASSERT_TRUE(Send(s.get(), Req(api::WRITE, 0, "half"), &resp));
    s->WritesDone();
    ASSERT_TRUE(s->Finish().ok());
  }
  areq.set_ref("half");
  EXPECT_TRUE(stub_->Abort(Ctx().get(), areq, &empty).ok());
  EXPECT_EQ(stub_->Abort(Ctx().get(), areq, &empty).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ContentServiceTest, LeaseHeaderMustNameALease) {
  auto ctx = Ctx("default", "missing-lease");
  auto s = stub_->Write(ctx.get());
  api::WriteContentRequest r = Req(api::STAT);
  r.set_ref("x");
  api::WriteContentResponse resp;
  EXPECT_FALSE(Send(s.get(), r, &resp));
  grpc::Status st = s->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("lease does not exist"), std::string::npos);
}

}  // namespace
}  // namespace berth::services
