#include "services/ttrpc_events.h"

#include <google/protobuf/empty.pb.h>

#include "common/log.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "services/basic_services.h"

namespace berth::services {

Status RegisterTtrpcEvents(ttrpc::Server& server, events::Exchange& exchange) {
  namespace tev = containerd::services::events::ttrpc::v1;
  return server.RegisterTyped<tev::ForwardRequest, google::protobuf::Empty>(
      kTtrpcEventsService, "Forward",
      [&exchange](const ttrpc::Context&,
                  const tev::ForwardRequest& req) -> Result<google::protobuf::Empty> {
        const auto& e = req.envelope();
        Status s = ForwardEnvelope(exchange, e.namespace_(), e.topic(),
                                   e.has_timestamp() ? &e.timestamp() : nullptr,
                                   e.has_event() ? &e.event() : nullptr);
        if (!s.ok()) {
          spdlog::debug("ttrpc Forward topic={} ns={}: {}", e.topic(), e.namespace_(),
                        s.ToString());
          return std::unexpected(s);
        }
        return google::protobuf::Empty();
      });
}

}  // namespace berth::services
