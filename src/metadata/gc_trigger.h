// How services ask for garbage collection without depending on the collector: after a
// deletion-type mutation call Trigger(false); for a `sync` delete, Trigger(true), which returns
// once a full pass that started after the call has finished.
#pragma once

namespace berth::metadata {

class GcTrigger {
 public:
  virtual ~GcTrigger() = default;
  virtual void Trigger(bool wait) = 0;
};

}  // namespace berth::metadata
