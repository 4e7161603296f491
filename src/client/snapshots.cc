#include "client/snapshots.h"

#include <google/protobuf/empty.pb.h>

#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"

namespace berth::client {

Status RemoveSnapshot(const Client& client, const std::string& snapshotter,
                      const std::string& key) {
  namespace sapi = containerd::services::snapshots::v1;
  auto stub = sapi::Snapshots::NewStub(client.channel());
  sapi::RemoveSnapshotRequest req;
  req.set_snapshotter(snapshotter);
  req.set_key(key);
  google::protobuf::Empty resp;
  return FromGrpc(stub->Remove(client.NewContext().get(), req, &resp));
}

}  // namespace berth::client
