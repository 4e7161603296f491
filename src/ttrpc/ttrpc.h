// berth's ttrpc: containerd's lightweight RPC (github.com/containerd/ttrpc 1.1, the version
// containerd 1.6 ships) for the daemon ⇄ shim link and shim → daemon events.
//
//   protocol.h    frames, Request/Response encoding, Metadata (pure, no I/O)
//   event_loop.h  EventLoop (epoll, one thread), Poster, RunOnLoop, LoopThread
//   server.h      Server, Context, Responder, TypedResponder
//   client.h      Client, CallOptions, ClientOptions
//
// Model: everything happens on one EventLoop thread per process part — no thread per
// connection or per call. Handlers run on the loop and must not block; long work (runc,
// waiting for an exit) answers later through a Responder from any thread. Unix path sockets
// only, every fd close-on-exec, peers must be the same user (SO_PEERCRED).
//
// What is not here: ttrpc 1.2 streaming (data frames are recognised and refused), client and
// server interceptors, and gRPC-style status details (decoded and ignored).
#pragma once

#include "ttrpc/client.h"      // IWYU pragma: export
#include "ttrpc/event_loop.h"  // IWYU pragma: export
#include "ttrpc/protocol.h"    // IWYU pragma: export
#include "ttrpc/server.h"      // IWYU pragma: export
