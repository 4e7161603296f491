// The ttrpc library runs on the process-wide EventLoop of src/common (shared with the OCI
// runtime core); these names keep ttrpc code and its users spelling it ttrpc::EventLoop.
#pragma once

#include "common/event_loop.h"

namespace berth::ttrpc {

using berth::Clock;
using berth::EventLoop;
using berth::LoopThread;
using berth::Poster;
using berth::RunOnLoop;

}  // namespace berth::ttrpc
