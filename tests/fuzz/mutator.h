// A small, deterministic mutation fuzzer for ctest (g++ has no libFuzzer): seeds come from a
// corpus directory in the repo (tests/fuzz/corpus/<target>/), each iteration picks a seed and
// stacks a few AFL-style mutations on it (bit flips, random bytes, inserts, deletes, duplicated
// ranges, splices with another seed, "interesting" integers in either byte order), then hands
// the result to the target, which checks its invariants with gtest assertions. Run under
// -DBERTH_SANITIZE=address,undefined the sanitizers add "no memory error, no UB".
//
// Bounded: BERTH_FUZZ_ITERATIONS (per target; default set by each test, small enough for every
// ctest run) and BERTH_FUZZ_SECONDS (per target, default 20) — whichever comes first. The PRNG
// seed is BERTH_FUZZ_SEED (default 1), so a failure reproduces with the same environment; the
// failing iteration's input is written to $BERTH_FUZZ_ARTIFACTS (default the working directory)
// as fuzz-<target>-<iteration>.bin.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace berth::fuzz {

// Every regular file in `dir`, sorted by name (the order must not depend on the file system).
inline std::vector<std::string> LoadCorpus(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> paths;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file()) paths.push_back(e.path());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    out.push_back(ss.str());
  }
  return out;
}

inline uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

class Mutator {
 public:
  Mutator(uint64_t seed, size_t max_size) : rng_(seed), max_size_(max_size) {}

  // A mutant of `corpus[some i]`: 1–4 stacked mutations; `corpus` also feeds splices.
  std::string Next(const std::vector<std::string>& corpus) {
    std::string data = corpus[Below(corpus.size())];
    int n = 1 + static_cast<int>(Below(4));
    for (int i = 0; i < n; ++i) MutateOnce(data, corpus);
    if (data.size() > max_size_) data.resize(max_size_);
    return data;
  }

  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

 private:
  void MutateOnce(std::string& d, const std::vector<std::string>& corpus) {
    switch (Below(9)) {
      case 0:  // flip one bit
        if (!d.empty()) d[Below(d.size())] ^= static_cast<char>(1u << Below(8));
        break;
      case 1:  // set one byte
        if (!d.empty()) d[Below(d.size())] = static_cast<char>(Below(256));
        break;
      case 2: {  // insert random bytes (sometimes one byte repeated)
        size_t at = Below(d.size() + 1), len = 1 + Below(16);
        std::string ins(len, static_cast<char>(Below(256)));
        if (Below(2)) {
          for (char& c : ins) c = static_cast<char>(Below(256));
        }
        d.insert(at, ins);
        break;
      }
      case 3: {  // delete a range
        if (d.empty()) break;
        size_t at = Below(d.size());
        d.erase(at, 1 + Below(std::min<size_t>(d.size() - at, 64)));
        break;
      }
      case 4: {  // duplicate a range elsewhere
        if (d.empty()) break;
        size_t from = Below(d.size()), len = 1 + Below(std::min<size_t>(d.size() - from, 64));
        std::string piece = d.substr(from, len);
        d.insert(Below(d.size() + 1), piece);
        break;
      }
      case 5: {  // splice: our head, another seed's tail
        const std::string& other = corpus[Below(corpus.size())];
        if (other.empty()) break;
        size_t cut = Below(d.size() + 1), from = Below(other.size());
        d = d.substr(0, cut) + other.substr(from);
        break;
      }
      case 6: {  // an interesting integer, 1/2/4/8 bytes, either byte order
        static constexpr uint64_t kInteresting[] = {
            0,          1,          0x7f,       0x80,       0xff,       0x100,
            0x7fff,     0x8000,     0xffff,     0x10000,    0x3fffff,   0x400000,
            0x400001,   0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull,
            0x7fffffffffffffffull,  0xffffffffffffffffull};
        if (d.empty()) break;
        uint64_t v = kInteresting[Below(std::size(kInteresting))];
        size_t width = size_t{1} << Below(4);
        size_t at = Below(d.size());
        bool big = Below(2);
        for (size_t i = 0; i < width && at + i < d.size(); ++i) {
          size_t shift = 8 * (big ? width - 1 - i : i);
          d[at + i] = static_cast<char>((v >> shift) & 0xff);
        }
        break;
      }
      case 7:  // truncate
        if (!d.empty()) d.resize(Below(d.size()));
        break;
      case 8: {  // add or subtract a small number from one byte (length and count fields)
        if (d.empty()) break;
        size_t at = Below(d.size());
        d[at] = static_cast<char>(static_cast<unsigned char>(d[at]) + Below(35) - 17);
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  size_t max_size_;
};

struct Stats {
  uint64_t iterations = 0;
  double seconds = 0;
};

// Runs `target` on every seed as is, then on mutants until the iteration or time budget is
// spent or a gtest assertion failed. Prints and records iterations per second.
inline Stats Run(const std::string& name, const std::filesystem::path& corpus_dir,
                 uint64_t default_iterations, size_t max_size,
                 const std::function<void(const std::string&)>& target) {
  std::vector<std::string> corpus = LoadCorpus(corpus_dir);
  EXPECT_FALSE(corpus.empty()) << "no seeds in " << corpus_dir;
  if (corpus.empty()) return {};
  const uint64_t iterations = EnvNumber("BERTH_FUZZ_ITERATIONS", default_iterations);
  const auto budget = std::chrono::seconds(EnvNumber("BERTH_FUZZ_SECONDS", 20));
  Mutator m(EnvNumber("BERTH_FUZZ_SEED", 1), max_size);
  const char* artifacts = std::getenv("BERTH_FUZZ_ARTIFACTS");

  auto start = std::chrono::steady_clock::now();
  Stats st;
  for (uint64_t i = 0; i < corpus.size() + iterations; ++i) {
    std::string input = i < corpus.size() ? corpus[i] : m.Next(corpus);
    target(input);
    ++st.iterations;
    if (::testing::Test::HasFailure()) {
      std::filesystem::path out = std::filesystem::path(artifacts ? artifacts : ".") /
                                  ("fuzz-" + name + "-" + std::to_string(i) + ".bin");
      std::ofstream(out, std::ios::binary) << input;
      ADD_FAILURE() << name << ": invariant broken at iteration " << i << " (input in " << out
                    << ")";
      break;
    }
    if ((i & 15) == 0 && std::chrono::steady_clock::now() - start > budget) break;
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double rate = st.seconds > 0 ? static_cast<double>(st.iterations) / st.seconds : 0;
  std::printf("fuzz %s: %llu iterations in %.2f s, %.0f/s\n", name.c_str(),
              static_cast<unsigned long long>(st.iterations), st.seconds, rate);
  ::testing::Test::RecordProperty("iterations", std::to_string(st.iterations));
  ::testing::Test::RecordProperty("iterations_per_second", std::to_string(static_cast<int64_t>(rate)));
  return st;
}

}  // namespace berth::fuzz
