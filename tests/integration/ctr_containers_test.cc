// Containers against the real ctr (`ctr containers create/ls/info/label/rm`) and over raw gRPC
// (what ctr cannot reach: ListStream framing, Any bytes, update masks, events). Expected outputs
// were taken from containerd 1.6.20 running the same commands.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "github.com/containerd/containerd/api/events/container.pb.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "event_recorder.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace cv1 = containerd::services::containers::v1;
namespace ev1 = containerd::services::events::v1;
namespace fs = std::filesystem;

constexpr char kImage[] = "example.com/ctr/c:latest";
constexpr char kSpecType[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

// The cells of ctr's comma-joined label output (Go map order varies).
std::set<std::string> LabelSet(const std::string& out) {
  std::set<std::string> labels;
  std::string line = out.substr(0, out.find('\n'));
  size_t pos = 0;
  while (pos < line.size()) {
    size_t comma = line.find(',', pos);
    if (comma == std::string::npos) comma = line.size();
    labels.insert(line.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return labels;
}

class CtrContainersTest : public DaemonTest {
 protected:
  // An open client channel holds berthd's shutdown for seconds; close ours first.
  void TearDown() override {
    stub_.reset();
    channel_.reset();
    DaemonTest::TearDown();
  }

  // Imports (and unpacks into overlayfs) a one-layer image named kImage.
  void ImportImage(const std::string& ns = "default") {
    OciImage img = BuildOciImage(tmp_ + "/img-" + ns, kImage);
    RunResult r = Ctr({"images", "import", img.tar}, ns);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  // Keys of `ctr snapshots ls` with their kind.
  std::map<std::string, std::string> Snapshots(const std::string& ns = "default") {
    RunResult r = Ctr({"snapshots", "ls"}, ns);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, std::string> out;
    auto lines = Lines(r.out);
    for (size_t i = 1; i < lines.size(); ++i) {
      auto cells = Cells(lines[i]);
      if (!cells.empty()) out[cells.front()] = cells.back();
    }
    return out;
  }
  size_t SnapshotDirs() {
    std::error_code ec;
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(root_ + "/snapshots/overlayfs/snapshots", ec)) {
      (void)e;
      ++n;
    }
    return n;
  }
  // A deletion-type mutation plus `sync` waits for a full GC pass.
  void SyncGc() {
    ASSERT_EQ(Ctr({"leases", "create", "--id", "gc-now"}).exit_code, 0);
    ASSERT_EQ(Ctr({"leases", "rm", "--sync", "gc-now"}).exit_code, 0);
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& ns = "default") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!ns.empty()) ctx->AddMetadata("containerd-namespace", ns);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }
  cv1::Containers::Stub& Stub() {
    if (!stub_) {
      channel_ = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
      stub_ = cv1::Containers::NewStub(channel_);
    }
    return *stub_;
  }
  cv1::Container MakeContainer(const std::string& id) {
    cv1::Container c;
    c.set_id(id);
    c.mutable_runtime()->set_name("io.containerd.runc.v2");
    c.mutable_spec()->set_type_url(kSpecType);
    c.mutable_spec()->set_value(R"({"ociVersion":"1.0.2-dev"})");
    return c;
  }
  grpc::Status Create(const cv1::Container& c, cv1::Container* out = nullptr) {
    cv1::CreateContainerRequest req;
    *req.mutable_container() = c;
    cv1::CreateContainerResponse resp;
    grpc::Status s = Stub().Create(Context().get(), req, &resp);
    if (out) *out = resp.container();
    return s;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cv1::Containers::Stub> stub_;
};

TEST_F(CtrContainersTest, CreateListInfoLabelRemove) {
  ImportImage();
  RunResult r = Ctr({"containers", "create", kImage, "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  r = Ctr({"containers", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "CONTAINER    IMAGE                       RUNTIME                  \n"
            "c1           example.com/ctr/c:latest    io.containerd.runc.v2    \n");
  EXPECT_EQ(Ctr({"c", "ls", "-q"}).out, "c1\n");

  r = Ctr({"containers", "info", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = nlohmann::json::parse(r.out);
  EXPECT_EQ(info["ID"], "c1");
  EXPECT_EQ(info["Image"], kImage);
  EXPECT_EQ(info["Snapshotter"], "overlayfs");
  EXPECT_EQ(info["SnapshotKey"], "c1");
  EXPECT_EQ(info["Runtime"]["Name"], "io.containerd.runc.v2");
  // ctr sends empty runc options; the Any comes back present, with its type and no bytes.
  EXPECT_EQ(info["Runtime"]["Options"],
            nlohmann::json({{"type_url", "containerd.runc.v1.Options"}}));
  EXPECT_EQ(info["Labels"],
            nlohmann::json({{"io.containerd.image.config.stop-signal", "SIGTERM"}}));
  EXPECT_EQ(info["Spec"]["ociVersion"], "1.0.2-dev");
  EXPECT_EQ(info["Spec"]["root"]["path"], "rootfs");
  EXPECT_EQ(info["CreatedAt"], info["UpdatedAt"]);
  EXPECT_TRUE(info["CreatedAt"].get<std::string>().ends_with("Z")) << info["CreatedAt"];
  EXPECT_TRUE(info["Extensions"].is_null());
  r = Ctr({"containers", "info", "--spec", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), info["Spec"]);

  // The rootfs: an active snapshot named after the container on the image's top layer.
  auto snaps = Snapshots();
  EXPECT_EQ(snaps["c1"], "Active");
  EXPECT_EQ(snaps.size(), 2u);

  r = Ctr({"containers", "label", "c1", "a=b", "x=y"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LabelSet(r.out), (std::set<std::string>{
                                 "a=b", "x=y", "io.containerd.image.config.stop-signal=SIGTERM"}));
  EXPECT_EQ(Ctr({"c", "ls", "-q", "labels.a==b"}).out, "c1\n");
  EXPECT_EQ(Ctr({"c", "ls", "-q", "labels.a==c"}).out, "");
  EXPECT_EQ(Ctr({"c", "ls", "-q", "runtime.name==io.containerd.runc.v2,image~=ctr/c"}).out, "c1\n");
  EXPECT_EQ(Ctr({"c", "ls", "labels.a==c"}).out, "CONTAINER    IMAGE    RUNTIME    \n");
  r = Ctr({"containers", "label", "c1", "a="});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LabelSet(r.out),
            (std::set<std::string>{"x=y", "io.containerd.image.config.stop-signal=SIGTERM"}));
  // containerd 1.6 quirk, reproduced: `ctr c label ID` with no labels sends a full-replace
  // Update without the snapshotter, which the immutability check refuses.
  r = Ctr({"containers", "label", "c1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err, "ctr: container.Snapshotter field is immutable: invalid argument\n");

  // rm removes the snapshot (client side), then the record.
  r = Ctr({"containers", "rm", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Ctr({"c", "ls", "-q"}).out, "");
  snaps = Snapshots();
  EXPECT_FALSE(snaps.contains("c1"));
  EXPECT_EQ(snaps.size(), 1u);  // the image's layer
}

TEST_F(CtrContainersTest, ErrorsReadLikeContainerds) {
  std::string rootfs = tmp_ + "/rootfs";
  fs::create_directories(rootfs);
  RunResult r = Ctr({"containers", "create", "--rootfs", rootfs, "r1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Ctr({"containers", "create", "--rootfs", rootfs, "r1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err, "ctr: container \"r1\": already exists\n");
  r = Ctr({"containers", "create", "--rootfs", rootfs, "bad..id"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err,
            "ctr: create container failed validation: container.ID: identifier \"bad..id\" must "
            "match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument\n");

  // A container without image or snapshot: "-" in the IMAGE column.
  EXPECT_EQ(Ctr({"containers", "ls"}).out,
            "CONTAINER    IMAGE    RUNTIME                  \n"
            "r1           -        io.containerd.runc.v2    \n");

  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"containers", "info", "nope"},
        std::vector<std::string>{"containers", "label", "nope", "a=b"},
        std::vector<std::string>{"containers", "rm", "nope"}}) {
    r = Ctr(cmd);
    EXPECT_NE(r.exit_code, 0) << cmd[1];
    EXPECT_NE(r.err.find("ctr: container \"nope\" in namespace \"default\": not found\n"),
              std::string::npos)
        << r.err;
  }
  r = Ctr({"containers", "rm", "r1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}).out, "");
}

TEST_F(CtrContainersTest, NamespaceWithAContainerCannotBeRemoved) {
  std::string rootfs = tmp_ + "/rootfs";
  fs::create_directories(rootfs);
  ASSERT_EQ(Ctr({"containers", "create", "--rootfs", rootfs, "r1"}, "cns").exit_code, 0);
  RunResult r = Ctr({"namespaces", "rm", "cns"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("ctr: unable to delete cns: namespace \"cns\" must be empty, but it still "
                       "has containers: failed precondition\n"),
            std::string::npos)
      << r.err;
  ASSERT_EQ(Ctr({"containers", "rm", "r1"}, "cns").exit_code, 0);
  r = Ctr({"namespaces", "rm", "cns"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CtrContainersTest, ContainerKeepsItsSnapshotFromGc) {
  ImportImage();
  // ctr creates the snapshot under a lease it drops right after Containers.Create; from then
  // on only the container holds the snapshot.
  ASSERT_EQ(Ctr({"containers", "create", kImage, "c1"}).exit_code, 0);
  ASSERT_EQ(Ctr({"containers", "create", kImage, "c2"}).exit_code, 0);
  SyncGc();
  auto snaps = Snapshots();
  EXPECT_EQ(snaps["c1"], "Active");
  EXPECT_EQ(snaps["c2"], "Active");
  EXPECT_EQ(SnapshotDirs(), 3u);
  // Without the image, the containers still hold their parent chain.
  ASSERT_EQ(Ctr({"images", "rm", "--sync", kImage}).exit_code, 0);
  EXPECT_EQ(Snapshots().size(), 3u);
  EXPECT_EQ(SnapshotDirs(), 3u);

  // With its snapshot kept, c1's removal leaves it unreferenced: GC takes it.
  RunResult r = Ctr({"containers", "rm", "--keep-snapshot", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SyncGc();
  snaps = Snapshots();
  EXPECT_FALSE(snaps.contains("c1"));
  EXPECT_TRUE(snaps.contains("c2"));
  EXPECT_EQ(SnapshotDirs(), 2u);
  // The last container goes, and with it everything.
  ASSERT_EQ(Ctr({"containers", "rm", "c2"}).exit_code, 0);
  SyncGc();
  EXPECT_TRUE(Snapshots().empty());
  EXPECT_EQ(SnapshotDirs(), 0u);
  EXPECT_EQ(Ctr({"content", "ls", "-q"}).out, "");
}

TEST_F(CtrContainersTest, GrpcAnysRoundTripAndListStreamSendsOnePerMessage) {
  cv1::Container c = MakeContainer("raw1");
  c.mutable_spec()->set_type_url("example.com/NotJson");
  c.mutable_spec()->set_value(std::string("\x00\x01\xfe\xff", 4));
  c.mutable_runtime()->mutable_options()->set_type_url("containerd.runc.v1.Options");
  c.mutable_runtime()->mutable_options()->set_value(std::string("\x08\x01", 2));
  (*c.mutable_extensions())["ext"].set_type_url("example.com/Ext");
  (*c.mutable_extensions())["ext"].set_value(std::string("\x00", 1));
  (*c.mutable_labels())["k"] = "v";
  c.set_snapshotter("overlayfs");
  c.set_snapshot_key("raw1-key");
  c.set_image("anything at all");
  cv1::Container created;
  ASSERT_TRUE(Create(c, &created).ok());
  EXPECT_GT(created.created_at().seconds(), 0);
  EXPECT_EQ(created.created_at().SerializeAsString(), created.updated_at().SerializeAsString());

  cv1::GetContainerRequest get;
  get.set_id("raw1");
  cv1::GetContainerResponse got;
  ASSERT_TRUE(Stub().Get(Context().get(), get, &got).ok());
  cv1::Container want = c;
  *want.mutable_created_at() = created.created_at();
  *want.mutable_updated_at() = created.updated_at();
  EXPECT_EQ(got.container().SerializeAsString(), want.SerializeAsString())
      << got.container().DebugString();
  // No spec: InvalidArgument. An empty spec Any is still a spec.
  cv1::Container no_spec = MakeContainer("raw2");
  no_spec.clear_spec();
  grpc::Status s = Create(no_spec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "create container failed validation: container.Spec must be set");
  no_spec.mutable_spec();
  ASSERT_TRUE(Create(no_spec).ok());
  ASSERT_TRUE(Create(MakeContainer("raw3")).ok());

  cv1::ListContainersRequest list;
  auto ctx = Context();
  auto reader = Stub().ListStream(ctx.get(), list);
  std::vector<std::string> ids;
  cv1::ListContainerMessage msg;
  while (reader->Read(&msg)) ids.push_back(msg.container().id());
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"raw1", "raw2", "raw3"}));
  list.add_filters("labels.k==v");
  cv1::ListContainersResponse listed;
  ASSERT_TRUE(Stub().List(Context().get(), list, &listed).ok());
  ASSERT_EQ(listed.containers_size(), 1);
  EXPECT_EQ(listed.containers(0).SerializeAsString(), want.SerializeAsString());
  list.set_filters(0, "labels.k==");
  EXPECT_EQ(Stub().List(Context().get(), list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CtrContainersTest, GrpcUpdateMasksAndErrors) {
  cv1::Container c = MakeContainer("u1");
  c.set_snapshotter("overlayfs");
  c.set_snapshot_key("u1");
  (*c.mutable_labels())["a"] = "1";
  ASSERT_TRUE(Create(c).ok());

  auto update = [&](const cv1::Container& in, std::vector<std::string> paths,
                    cv1::Container* out = nullptr, const std::string& ns = "default") {
    cv1::UpdateContainerRequest req;
    *req.mutable_container() = in;
    for (const auto& p : paths) req.mutable_update_mask()->add_paths(p);
    cv1::UpdateContainerResponse resp;
    grpc::Status s = Stub().Update(Context(ns).get(), req, &resp);
    if (out) *out = resp.container();
    return s;
  };
  // Full replace: snapshotter and runtime name must match.
  cv1::Container repl = MakeContainer("u1");
  grpc::Status s = update(repl, {});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "container.Snapshotter field is immutable");
  repl.set_snapshotter("overlayfs");
  repl.mutable_runtime()->set_name("io.containerd.runsc.v1");
  s = update(repl, {});
  EXPECT_EQ(s.error_message(), "container.Runtime.Name field is immutable");
  repl.mutable_runtime()->set_name("io.containerd.runc.v2");
  repl.set_image("img2");
  cv1::Container out;
  ASSERT_TRUE(update(repl, {}, &out).ok());
  EXPECT_TRUE(out.labels().empty());
  EXPECT_EQ(out.image(), "img2");
  EXPECT_EQ(out.snapshot_key(), "");  // replaced too
  EXPECT_GE(out.updated_at().seconds(), out.created_at().seconds());

  cv1::Container labels;
  labels.set_id("u1");
  (*labels.mutable_labels())["b"] = "2";
  ASSERT_TRUE(update(labels, {"labels.b"}, &out).ok());
  EXPECT_EQ(out.labels().at("b"), "2");
  EXPECT_EQ(out.image(), "img2");
  s = update(labels, {"runtime"});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "cannot update \"runtime\" field on \"u1\"");
  labels.set_id("");
  s = update(labels, {"labels.b"});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "Container.ID required");
  labels.set_id("nope");
  EXPECT_EQ(update(labels, {"labels.b"}).error_code(), grpc::StatusCode::NOT_FOUND);
  labels.set_id("u1");
  EXPECT_EQ(update(labels, {"labels.b"}, nullptr, "").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  cv1::DeleteContainerRequest del;
  del.set_id("u1");
  google::protobuf::Empty empty;
  ASSERT_TRUE(Stub().Delete(Context().get(), del, &empty).ok());
  s = Stub().Delete(Context().get(), del, &empty);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "container u1");
}

TEST_F(CtrContainersTest, EventsForCreateUpdateDelete) {
  EventRecorder recorder(socket_, {"topic~=\"^/containers/\""});
  auto count = [&] { return recorder.Count(); };
  // The subscription is asynchronous: create probe containers until one is seen.
  std::string rootfs = tmp_ + "/rootfs";
  fs::create_directories(rootfs);
  for (int i = 0; i < 50 && count() == 0; ++i) {
    if (i % 10 == 0) {
      ASSERT_EQ(Ctr({"c", "create", "--rootfs", rootfs, "probe" + std::to_string(i)}).exit_code, 0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(count(), 0u);
  size_t before = count();
  ASSERT_EQ(Ctr({"c", "create", "--rootfs", rootfs, "e1"}).exit_code, 0);
  ASSERT_EQ(Ctr({"c", "label", "e1", "x=y"}).exit_code, 0);
  ASSERT_EQ(Ctr({"c", "rm", "e1"}).exit_code, 0);
  for (int i = 0; i < 50 && count() < before + 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  recorder.Stop();
  std::vector<ev1::Envelope> got = recorder.Events();
  ASSERT_GE(got.size(), before + 3);
  const ev1::Envelope& create = got[before];
  const ev1::Envelope& update = got[before + 1];
  const ev1::Envelope& remove = got[before + 2];
  EXPECT_EQ(create.namespace_(), "default");
  EXPECT_EQ(create.topic(), "/containers/create");
  EXPECT_EQ(create.event().type_url(), "containerd.events.ContainerCreate");
  containerd::events::ContainerCreate cc;
  ASSERT_TRUE(cc.ParseFromString(create.event().value()));
  EXPECT_EQ(cc.id(), "e1");
  EXPECT_EQ(cc.image(), "");
  EXPECT_EQ(cc.runtime().name(), "io.containerd.runc.v2");
  EXPECT_EQ(cc.runtime().options().type_url(), "containerd.runc.v1.Options");
  EXPECT_EQ(update.topic(), "/containers/update");
  EXPECT_EQ(update.event().type_url(), "containerd.events.ContainerUpdate");
  containerd::events::ContainerUpdate cu;
  ASSERT_TRUE(cu.ParseFromString(update.event().value()));
  EXPECT_EQ(cu.id(), "e1");
  EXPECT_EQ(cu.labels().at("x"), "y");
  EXPECT_EQ(remove.topic(), "/containers/delete");
  EXPECT_EQ(remove.event().type_url(), "containerd.events.ContainerDelete");
  containerd::events::ContainerDelete cd;
  ASSERT_TRUE(cd.ParseFromString(remove.event().value()));
  EXPECT_EQ(cd.id(), "e1");
}

}  // namespace
}  // namespace berth::testing
