// The daemon's ttrpc events endpoint (`<grpc socket>.ttrpc`): shims forward their task events
// here with containerd.services.events.ttrpc.v1.Events/Forward; each envelope is validated and
// re-broadcast into the exchange with its own namespace, topic and timestamp.
#pragma once

#include "events/exchange.h"
#include "ttrpc/server.h"

namespace berth::services {

inline constexpr char kTtrpcEventsService[] = "containerd.services.events.ttrpc.v1.Events";

Status RegisterTtrpcEvents(ttrpc::Server& server, events::Exchange& exchange);

}  // namespace berth::services
