// `berth containers` against containers the real ctr creates: ls (table, -q, JSON, filters),
// info (the OCI spec decoded), label, rm (with the snapshot, as ctr does).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;
namespace cv1 = containerd::services::containers::v1;

constexpr char kImage[] = "example.com/berth/c:latest";

class BerthContainersCliTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
  }
  void ImportImage() {
    OciImage img = BuildOciImage(tmp_ + "/img", kImage);
    RunResult r = Ctr({"images", "import", img.tar});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  std::string Rootfs() {
    std::string dir = tmp_ + "/rootfs";
    fs::create_directories(dir);
    return dir;
  }
};

TEST_F(BerthContainersCliTest, ListInfoLabelRemove) {
  ImportImage();
  ASSERT_EQ(Ctr({"containers", "create", kImage, "c1"}).exit_code, 0);
  ASSERT_EQ(Ctr({"containers", "create", "--rootfs", Rootfs(), "r1"}).exit_code, 0);

  RunResult r = Berth({"containers", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID   IMAGE                        RUNTIME\n"
            "c1   example.com/berth/c:latest   io.containerd.runc.v2\n"
            "r1   -                            io.containerd.runc.v2\n");
  EXPECT_EQ(Berth({"c", "ls", "-q"}).out, "c1\nr1\n");
  EXPECT_EQ(Berth({"c", "ls", "-q", "image==example.com/berth/c:latest"}).out, "c1\n");
  EXPECT_EQ(Berth({"c", "ls", "-q", "id==r1", "id==c1"}).out, "c1\nr1\n");
  r = Berth({"c", "ls", "labels.x=="});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(invalid argument)"), std::string::npos) << r.err;

  r = Berth({"--format", "json", "c", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["id"], "c1");
  EXPECT_EQ(list[0]["snapshotter"], "overlayfs");
  EXPECT_EQ(list[0]["snapshot_key"], "c1");
  EXPECT_EQ(list[1]["image"], "");
  EXPECT_EQ(nlohmann::json::parse(Berth({"--format", "json", "c", "ls", "-q"}).out),
            nlohmann::json({"c1", "r1"}));

  r = Berth({"containers", "info", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = nlohmann::json::parse(r.out);
  EXPECT_EQ(info["id"], "c1");
  EXPECT_EQ(info["image"], kImage);
  EXPECT_EQ(info["runtime"]["name"], "io.containerd.runc.v2");
  // runc options are a protobuf berth knows: decoded (empty here), not base64.
  EXPECT_EQ(info["runtime"]["options"], nlohmann::json({{"type_url", "containerd.runc.v1.Options"},
                                                        {"value", nlohmann::json::object()}}));
  EXPECT_EQ(info["spec"]["ociVersion"], "1.0.2-dev");
  EXPECT_EQ(info["labels"]["io.containerd.image.config.stop-signal"], "SIGTERM");
  EXPECT_TRUE(info["created_at"].get<std::string>().ends_with("Z"));
  // The same spec ctr decodes.
  auto ctr_spec = nlohmann::json::parse(Ctr({"containers", "info", "--spec", "c1"}).out);
  EXPECT_EQ(nlohmann::json::parse(Berth({"c", "info", "--spec", "c1"}).out), ctr_spec);

  r = Berth({"containers", "label", "c1", "a=b", "z=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a=b,io.containerd.image.config.stop-signal=SIGTERM,z=1\n");
  r = Berth({"containers", "label", "c1", "a="});
  EXPECT_EQ(r.out, "io.containerd.image.config.stop-signal=SIGTERM,z=1\n");
  // Without labels it prints them (where ctr's full-replace Update fails).
  r = Berth({"containers", "label", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "io.containerd.image.config.stop-signal=SIGTERM,z=1\n");
  r = Berth({"--format", "json", "containers", "label", "r1", "k=v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({{"id", "r1"}, {"labels", {{"k", "v"}}}}));
  EXPECT_EQ(Ctr({"c", "ls", "-q", "labels.k==v"}).out, "r1\n");

  // rm goes on past a failure, and takes the container's snapshot along.
  r = Berth({"containers", "rm", "c1", "ghost", "r1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "c1\nr1\n");
  EXPECT_NE(r.err.find("container \"ghost\" in namespace \"default\" (not found)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}).out, "");
  EXPECT_EQ(Ctr({"snapshots", "info", "c1"}).exit_code, 1);
}

TEST_F(BerthContainersCliTest, RemoveCanKeepTheSnapshot) {
  ImportImage();
  ASSERT_EQ(Ctr({"containers", "create", kImage, "c1"}).exit_code, 0);
  // Once the container is gone only this label holds the snapshot from GC (as in containerd).
  ASSERT_EQ(Ctr({"snapshots", "label", "c1", "containerd.io/gc.root=keep"}).exit_code, 0);
  RunResult r = Berth({"--format", "json", "c", "rm", "--keep-snapshot", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({"c1"}));
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}).out, "");
  ASSERT_EQ(Ctr({"leases", "create", "--id", "gc-now"}).exit_code, 0);
  ASSERT_EQ(Ctr({"leases", "rm", "--sync", "gc-now"}).exit_code, 0);
  EXPECT_EQ(Ctr({"snapshots", "info", "c1"}).exit_code, 0);
}

TEST_F(BerthContainersCliTest, InfoShowsAnysItCannotDecodeAsBase64) {
  // ctr only ever sends OCI specs; a raw gRPC client may send anything.
  {
    auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "default");
    cv1::CreateContainerRequest req;
    auto* c = req.mutable_container();
    c->set_id("raw");
    c->mutable_runtime()->set_name("io.containerd.runc.v2");
    c->mutable_spec()->set_type_url("example.com/Blob");
    c->mutable_spec()->set_value(std::string("\x00\x01", 2));
    (*c->mutable_extensions())["three"].set_value("abc");
    (*c->mutable_extensions())["two"].set_value("ab");
    cv1::CreateContainerResponse resp;
    ASSERT_TRUE(cv1::Containers::NewStub(channel)->Create(&ctx, req, &resp).ok());
  }
  RunResult r = Berth({"c", "info", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(not found)"), std::string::npos) << r.err;
  r = Berth({"c", "info", "raw"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = nlohmann::json::parse(r.out);
  EXPECT_EQ(info["spec"], nlohmann::json({{"type_url", "example.com/Blob"}, {"value", "AAE="}}));
  EXPECT_EQ(info["extensions"], nlohmann::json({{"three", {{"type_url", ""}, {"value", "YWJj"}}},
                                                {"two", {{"type_url", ""}, {"value", "YWI="}}}}));
  EXPECT_TRUE(info["runtime"]["options"].is_null());
  EXPECT_EQ(info["snapshotter"], "");
}

}  // namespace
}  // namespace berth::testing
