// Garbage collection seen through the real ctr: what an image, a lease or a gc.root label holds
// stays on disk; once nothing does, a sync delete removes the blobs before it returns.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "github.com/containerd/containerd/api/services/leases/v1/leases.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

class CtrGcTest : public DaemonTest {
 protected:
  std::set<std::string> BlobsOnDisk() {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(root_ + "/content/blobs/sha256", ec)) {
      out.insert("sha256:" + e.path().filename().string());
    }
    return out;
  }
  std::set<std::string> ContentList(const std::string& ns = "default") {
    RunResult r = Ctr({"content", "ls", "-q"}, ns);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::set<std::string> out;
    size_t pos = 0;
    while (pos < r.out.size()) {
      size_t nl = r.out.find('\n', pos);
      if (nl == std::string::npos) nl = r.out.size();
      if (nl > pos) out.insert(r.out.substr(pos, nl - pos));
      pos = nl + 1;
    }
    return out;
  }
  OciImage Import(const std::string& name, const std::string& ns = "default") {
    OciImage img = BuildOciImage(tmp_ + "/img-" + ns, name);
    RunResult r = Ctr({"images", "import", "--no-unpack", img.tar}, ns);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return img;
  }
};

TEST_F(CtrGcTest, ImageRemoveSyncCollectsItsBlobs) {
  OciImage img = Import("example.com/gc/one:latest");
  std::set<std::string> tree = {img.manifest_digest, img.config_digest, img.layer_digest};
  // ctr import labels the manifest with gc.ref labels; the whole tree is held by the image.
  // (The archive's index blob, unreferenced once import drops its lease, may still be there
  // until the pass that lease delete triggered has run.)
  for (const auto& d : tree) {
    EXPECT_TRUE(ContentList().contains(d)) << d;
    EXPECT_TRUE(BlobsOnDisk().contains(d)) << d;
  }

  RunResult r = Ctr({"images", "rm", "--sync", "example.com/gc/one:latest"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(ContentList().empty());
  EXPECT_TRUE(BlobsOnDisk().empty());
}

TEST_F(CtrGcTest, AnotherImageKeepsSharedBlobs) {
  OciImage img = Import("example.com/gc/a:latest");
  ASSERT_EQ(Ctr({"images", "tag", "example.com/gc/a:latest", "example.com/gc/b:latest"}).exit_code,
            0);
  ASSERT_EQ(Ctr({"images", "rm", "--sync", "example.com/gc/a:latest"}).exit_code, 0);
  EXPECT_TRUE(BlobsOnDisk().contains(img.layer_digest));
  EXPECT_TRUE(ContentList().contains(img.manifest_digest));
  ASSERT_EQ(Ctr({"images", "rm", "--sync", "example.com/gc/b:latest"}).exit_code, 0);
  EXPECT_TRUE(BlobsOnDisk().empty());
}

TEST_F(CtrGcTest, LeaseHoldsContentAndWhatItReferencesUntilDeleted) {
  OciImage img = Import("example.com/gc/leased:latest");
  ASSERT_EQ(Ctr({"leases", "create", "--id", "hold"}).exit_code, 0);
  {  // ctr has no command to add a lease resource; the Go client's API call, over gRPC.
    namespace lv1 = containerd::services::leases::v1;
    auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "default");
    lv1::AddResourceRequest req;
    google::protobuf::Empty resp;
    req.set_id("hold");
    req.mutable_resource()->set_id(img.manifest_digest);
    req.mutable_resource()->set_type("content");
    ASSERT_TRUE(lv1::Leases::NewStub(channel)->AddResource(&ctx, req, &resp).ok());
  }
  ASSERT_EQ(Ctr({"images", "rm", "--sync", "example.com/gc/leased:latest"}).exit_code, 0);
  // The manifest is leased; its gc.ref labels keep config and layer too.
  std::set<std::string> tree = {img.manifest_digest, img.config_digest, img.layer_digest};
  EXPECT_EQ(ContentList(), tree);
  EXPECT_EQ(BlobsOnDisk(), tree);
  ASSERT_EQ(Ctr({"leases", "rm", "--sync", "hold"}).exit_code, 0);
  EXPECT_TRUE(ContentList().empty());
  EXPECT_TRUE(BlobsOnDisk().empty());
}

TEST_F(CtrGcTest, GcRootLabelPinsContent) {
  OciImage img = Import("example.com/gc/pinned:latest");
  ASSERT_EQ(Ctr({"content", "label", img.layer_digest, "containerd.io/gc.root=pinned"}).exit_code,
            0);
  ASSERT_EQ(Ctr({"images", "rm", "--sync", "example.com/gc/pinned:latest"}).exit_code, 0);
  EXPECT_EQ(BlobsOnDisk(), std::set<std::string>{img.layer_digest});
  ASSERT_EQ(Ctr({"content", "label", img.layer_digest, "containerd.io/gc.root="}).exit_code, 0);
  // Any deletion triggers a pass; a sync lease delete waits for it.
  ASSERT_EQ(Ctr({"leases", "create", "--id", "tmp"}).exit_code, 0);
  ASSERT_EQ(Ctr({"leases", "rm", "--sync", "tmp"}).exit_code, 0);
  EXPECT_TRUE(BlobsOnDisk().empty());
}

TEST_F(CtrGcTest, BlobSharedByTwoNamespacesStaysUntilBothLetGo) {
  // One archive into both namespaces (two builds could differ in tar mtimes): same bytes,
  // stored once on disk, owned by each namespace.
  OciImage a = Import("example.com/gc/shared:latest", "ns1");
  RunResult r = Ctr({"images", "import", "--no-unpack", a.tar}, "ns2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(ContentList("ns2").contains(a.layer_digest));
  ASSERT_EQ(Ctr({"images", "rm", "--sync", "example.com/gc/shared:latest"}, "ns1").exit_code, 0);
  EXPECT_TRUE(ContentList("ns1").empty());
  EXPECT_TRUE(BlobsOnDisk().contains(a.layer_digest));
  ASSERT_EQ(Ctr({"images", "rm", "--sync", "example.com/gc/shared:latest"}, "ns2").exit_code, 0);
  EXPECT_TRUE(BlobsOnDisk().empty());
}

TEST_F(CtrGcTest, StartupPassCollectsWhatNothingReferences) {
  // `ctr content ingest` takes no lease, and no deletion has triggered a pass yet: the blob
  // lives until the next pass — here the one berthd runs before it serves again.
  ASSERT_EQ(berth::testing::Run({"/usr/bin/ctr", "--address", socket_, "content", "ingest", "loose"},
                                "loose bytes")
                .exit_code,
            0);
  ASSERT_EQ(BlobsOnDisk().size(), 1u);
  KillDaemon();
  ASSERT_TRUE(StartDaemon());
  EXPECT_TRUE(ContentList().empty());
  EXPECT_TRUE(BlobsOnDisk().empty());
}

}  // namespace
}  // namespace berth::testing
