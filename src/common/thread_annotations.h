// Clang thread-safety annotations (LevelDB's port/thread_annotations.h, Abseil's
// thread_annotations.h): they state which mutex guards a field and which locks a function needs,
// so that `clang++ -Wthread-safety` can check it. Under g++ (our compiler) they expand to
// nothing and document the same contract a `// GUARDED_BY(mu_)` comment used to.
//
//   std::mutex mu_;
//   int pending_ GUARDED_BY(mu_) = 0;
//   void FlushLocked() REQUIRES(mu_);
//
// The analysis only understands mutex types annotated as capabilities. libstdc++'s std::mutex is
// not (libc++'s is, with _LIBCPP_ENABLE_THREAD_SAFETY_ANNOTATIONS), so with g++'s library clang
// reports each GUARDED_BY on a std::mutex under -Wthread-safety-attributes; the cmake option
// BERTH_THREAD_SAFETY (clang only) turns the analysis on and keeps that class of warning quiet.
#pragma once

#if defined(__clang__)
#define BERTH_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define BERTH_THREAD_ANNOTATION_(x)
#endif

// The field is read and written only with `x` held.
#ifndef GUARDED_BY
#define GUARDED_BY(x) BERTH_THREAD_ANNOTATION_(guarded_by(x))
#endif
// The object the pointer points to is guarded by `x` (the pointer itself is not).
#ifndef PT_GUARDED_BY
#define PT_GUARDED_BY(x) BERTH_THREAD_ANNOTATION_(pt_guarded_by(x))
#endif
// Lock ordering: this mutex is taken after / before the listed ones.
#ifndef ACQUIRED_AFTER
#define ACQUIRED_AFTER(...) BERTH_THREAD_ANNOTATION_(acquired_after(__VA_ARGS__))
#endif
#ifndef ACQUIRED_BEFORE
#define ACQUIRED_BEFORE(...) BERTH_THREAD_ANNOTATION_(acquired_before(__VA_ARGS__))
#endif
// The caller must hold the capability exclusively / shared.
#ifndef REQUIRES
#define REQUIRES(...) BERTH_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#endif
#ifndef REQUIRES_SHARED
#define REQUIRES_SHARED(...) BERTH_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
#endif
// The function takes / releases the capability and returns with it held / not held.
#ifndef ACQUIRE
#define ACQUIRE(...) BERTH_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#endif
#ifndef ACQUIRE_SHARED
#define ACQUIRE_SHARED(...) BERTH_THREAD_ANNOTATION_(acquire_shared_capability(__VA_ARGS__))
#endif
#ifndef RELEASE
#define RELEASE(...) BERTH_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#endif
#ifndef RELEASE_SHARED
#define RELEASE_SHARED(...) BERTH_THREAD_ANNOTATION_(release_shared_capability(__VA_ARGS__))
#endif
#ifndef TRY_ACQUIRE
#define TRY_ACQUIRE(...) BERTH_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
#endif
// The caller must not hold the capability (the function takes it itself).
#ifndef EXCLUDES
#define EXCLUDES(...) BERTH_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#endif
// Asserts at run time that the capability is held.
#ifndef ASSERT_CAPABILITY
#define ASSERT_CAPABILITY(x) BERTH_THREAD_ANNOTATION_(assert_capability(x))
#endif
// The function returns a reference to the capability `x`.
#ifndef RETURN_CAPABILITY
#define RETURN_CAPABILITY(x) BERTH_THREAD_ANNOTATION_(lock_returned(x))
#endif
// Types: a mutex-like class, and an RAII holder of one.
#ifndef CAPABILITY
#define CAPABILITY(x) BERTH_THREAD_ANNOTATION_(capability(x))
#endif
#ifndef SCOPED_CAPABILITY
#define SCOPED_CAPABILITY BERTH_THREAD_ANNOTATION_(scoped_lockable)
#endif
// Opts one function out of the analysis (say why next to it).
#ifndef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS BERTH_THREAD_ANNOTATION_(no_thread_safety_analysis)
#endif
