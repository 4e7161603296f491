// Bounded mutation fuzzing (tests/fuzz/mutator.h) of the parsers that take bytes from clients,
// shims and registries: the filter language, ttrpc frames and messages, what parses image
// references today (digests, identifiers, labels), and layer extraction. Each target states
// its invariants; the sanitizer build (scripts/sanitize.sh) adds "no memory error, no UB".
// Corpora: tests/fuzz/corpus/<target>/ (regenerate with tests/fuzz/make_corpus.py).
//
//   BERTH_FUZZ_ITERATIONS=200000 BERTH_FUZZ_SECONDS=600 build/bin/fuzz_tests
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "../diff/string_reader.h"
#include "common/digest.h"
#include "common/filters.h"
#include "common/status.h"
#include "common/validate.h"
#include "content/digest.h"
#include "diff/apply.h"
#include "mutator.h"
#include "ttrpc/protocol.h"

namespace berth {
namespace {

namespace fs = std::filesystem;

const fs::path kCorpus = BERTH_FUZZ_CORPUS;

// ---- filters ------------------------------------------------------------------------------

// An object with a few fields, so parsed filters also get matched (regexes run, map lookups).
std::optional<std::string> FakeField(std::span<const std::string> fp) {
  if (fp.empty()) return std::nullopt;
  if (fp[0] == "name") return std::string("docker.io/library/busybox:latest");
  if (fp[0] == "topic") return std::string("/tasks/exit");
  if (fp[0] == "labels") {
    static const Labels kLabels = {{"a", "b"}, {"x.y", "z"}, {"gc.ref.content", "sha256:00"}};
    return filters::LookupMap(kLabels, fp.subspan(1));
  }
  if (fp[0] == "empty") return std::string();
  return std::nullopt;
}

void FilterTarget(const std::string& input) {
  auto f = filters::Parse(input);
  if (!f) {
    ASSERT_EQ(f.error().code(), Code::kInvalidArgument) << f.error().ToString();
    ASSERT_FALSE(f.error().message().empty());
  } else {
    (void)f->Match(FakeField);
    // Every selector has a field path; a parsed filter is never "match all" unless empty.
    ASSERT_EQ(f->MatchesAll(), input.empty());
    for (const auto& alt : f->alternatives()) {
      for (const auto& sel : alt) ASSERT_FALSE(sel.fieldpath.empty()) << input;
    }
  }
  // The same text twice is the same answer.
  auto again = filters::Parse(input);
  ASSERT_EQ(f.has_value(), again.has_value());
  // Lines as separate filters (a request's repeated `filters` field).
  std::vector<std::string> lines;
  std::istringstream in(input);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  auto all = filters::ParseAll(lines);
  if (!all) {
    ASSERT_EQ(all.error().code(), Code::kInvalidArgument);
  } else {
    (void)all->Match(FakeField);
  }
}

TEST(Fuzz, FilterParser) {
  fuzz::Run("filters", kCorpus / "filters", 20000, 4096, FilterTarget);
}

// ---- ttrpc --------------------------------------------------------------------------------

void CheckRequestRoundTrip(std::string_view payload) {
  auto r = ttrpc::DecodeRequest(payload);
  if (!r) {
    ASSERT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
    return;
  }
  // What we decoded, encoded again (canonically), decodes to the same request.
  auto back = ttrpc::DecodeRequest(ttrpc::EncodeRequest(*r));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  ASSERT_EQ(back->service, r->service);
  ASSERT_EQ(back->method, r->method);
  ASSERT_EQ(back->payload, r->payload);
  ASSERT_EQ(back->timeout_nano, r->timeout_nano);
  ASSERT_EQ(back->metadata, r->metadata);
}

void CheckResponseRoundTrip(std::string_view payload) {
  auto r = ttrpc::DecodeResponse(payload);
  if (!r) {
    ASSERT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
    return;
  }
  auto back = ttrpc::DecodeResponse(ttrpc::EncodeResponse(*r));
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  ASSERT_EQ(back->payload, r->payload);
  ASSERT_EQ(back->status.has_value(), r->status.has_value());
  if (r->status) {
    ASSERT_EQ(back->status->code, r->status->code);
    ASSERT_EQ(back->status->message, r->status->message);
    ASSERT_EQ(back->status->details, r->status->details);
    (void)ttrpc::StatusFromRpc(*r->status);
  }
}

void TtrpcTarget(const std::string& input) {
  // The byte stream fed whole and fed in small pieces gives the same frames.
  ttrpc::FrameReader whole, pieces;
  std::vector<ttrpc::FrameReader::Event> a, b;
  whole.Feed(input, &a);
  size_t step = 1 + (input.empty() ? 0 : static_cast<unsigned char>(input.back()) % 13);
  for (size_t off = 0; off < input.size(); off += step) {
    pieces.Feed(std::string_view(input).substr(off, step), &b);
  }
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(whole.mid_frame(), pieces.mid_frame());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].oversized, b[i].oversized);
    ASSERT_EQ(a[i].payload, b[i].payload);
    ASSERT_EQ(a[i].header.stream_id, b[i].header.stream_id);
    if (a[i].oversized) {
      ASSERT_GT(a[i].header.length, ttrpc::kMaxMessageSize);
      ASSERT_TRUE(a[i].payload.empty());
      continue;
    }
    ASSERT_EQ(a[i].payload.size(), a[i].header.length);
    // Header encode/decode is an exact inverse.
    char hdr[ttrpc::kHeaderSize];
    ttrpc::EncodeHeader(a[i].header, hdr);
    auto h = ttrpc::DecodeHeader(hdr);
    ASSERT_EQ(h.length, a[i].header.length);
    ASSERT_EQ(h.stream_id, a[i].header.stream_id);
    ASSERT_EQ(h.type, a[i].header.type);
    ASSERT_EQ(h.flags, a[i].header.flags);
    CheckRequestRoundTrip(a[i].payload);
    CheckResponseRoundTrip(a[i].payload);
  }
  // The decoders straight on the bytes after the first header (mutations reach them directly).
  std::string_view body = std::string_view(input).substr(std::min(input.size(), ttrpc::kHeaderSize));
  CheckRequestRoundTrip(body);
  CheckResponseRoundTrip(body);
}

TEST(Fuzz, TtrpcFrames) {
  fuzz::Run("ttrpc", kCorpus / "ttrpc", 20000, 8192, TtrpcTarget);
}

// ---- references ---------------------------------------------------------------------------

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// No image reference parser exists in src/ yet (the distribution work brings one; it belongs
// in this target). What parses the parts of a reference today: digests (`name@sha256:...`),
// identifiers (namespace, container and snapshot keys) and labels.
void ReferenceTarget(const std::string& input) {
  std::string_view in = input;
  size_t at = in.rfind('@');
  std::string_view name = at == std::string_view::npos ? in : in.substr(0, at);
  std::string_view digest = at == std::string_view::npos ? in : in.substr(at + 1);

  Status common = ValidateDigest(digest);
  if (!common.ok()) {
    ASSERT_EQ(common.code(), Code::kInvalidArgument);
  }
  Status sha = content::ValidateDigest(digest);
  if (!sha.ok()) {
    ASSERT_EQ(sha.code(), Code::kInvalidArgument);
  }
  auto hex = content::DigestHex(digest);
  ASSERT_EQ(hex.has_value(), sha.ok());
  if (sha.ok()) {
    // A content digest is a well-formed digest, and its hex part is safe as a file name.
    ASSERT_TRUE(common.ok()) << digest;
    ASSERT_EQ(hex->size(), content::kSha256HexLength);
    ASSERT_TRUE(IsLowerHex(*hex)) << *hex;
    ASSERT_TRUE(content::IsSha256Hex(*hex));
    ASSERT_EQ(std::string(content::kSha256Prefix) + *hex, digest);
  }
  if (common.ok()) {
    size_t colon = digest.find(':');
    ASSERT_NE(colon, std::string_view::npos);
    ASSERT_TRUE(IsLowerHex(digest.substr(colon + 1))) << digest;
  }

  Status id = ValidateIdentifier(name);
  if (!id.ok()) {
    ASSERT_EQ(id.code(), Code::kInvalidArgument);
  } else {
    // Safe as one path component.
    ASSERT_FALSE(name.empty());
    ASSERT_LE(name.size(), kMaxIdentifierLength);
    ASSERT_EQ(name.find('/'), std::string_view::npos);
    ASSERT_NE(name, ".");
    ASSERT_NE(name, "..");
  }
  size_t eq = name.find('=');
  Status label = eq == std::string_view::npos ? ValidateLabel(name, "")
                                              : ValidateLabel(name.substr(0, eq), name.substr(eq + 1));
  if (!label.ok()) {
    ASSERT_EQ(label.code(), Code::kInvalidArgument);
  }
  (void)Quote(name);
}

TEST(Fuzz, Reference) {
  fuzz::Run("reference", kCorpus / "reference", 50000, 1024, ReferenceTarget);
}

// ---- layer apply --------------------------------------------------------------------------

// Everything under `dir` except `skip` (the root), with what a stray write would change.
std::string Listing(const fs::path& dir, const fs::path& skip) {
  std::ostringstream o;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->path() == skip) {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    o << it->path().string() << " " << st.st_mode << " " << st.st_uid << ":" << st.st_gid << " "
      << st.st_size << " " << st.st_nlink << "\n";
  }
  return o.str();
}

class ApplyJail {
 public:
  ApplyJail() {
    char tmpl[] = "/tmp/berth-fuzz-apply-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    tmp_ = tmpl;
    // "../../x" from the root lands in tmp_/a, "../outside" next to the sentinel.
    fs::create_directories(Root());  // exists whenever the listing is taken
    fs::create_directories(tmp_ / "outside" / "etc");
    std::ofstream(tmp_ / "outside" / "sentinel") << "do not touch\n";
    std::ofstream(tmp_ / "outside" / "etc" / "passwd") << "host passwd\n";
    before_ = Listing(tmp_, Root());
  }
  ~ApplyJail() {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  fs::path Root() const { return tmp_ / "a" / "b" / "root"; }
  const fs::path& dir() const { return tmp_; }
  const std::string& before() const { return before_; }

 private:
  fs::path tmp_;
  std::string before_;
};

// A layer may leave directories without write or search permission; as a non-root user that
// would stop remove_all. Open them up top-down first (no symlink is followed).
void MakeRemovable(const fs::path& root) {
  std::error_code ec;
  ::chmod(root.c_str(), 0700);
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
  }
}

void ApplyTarget(ApplyJail& jail, uint64_t n, const std::string& blob) {
  std::error_code ec;
  if (::geteuid() != 0) MakeRemovable(jail.Root());
  fs::remove_all(jail.Root(), ec);
  ASSERT_FALSE(fs::exists(jail.Root())) << ec.message();
  fs::create_directories(jail.Root());
  // Media types gate what is accepted; decompression goes by magic. Alternate the whiteout mode.
  const char* mt = (n & 2) ? "application/vnd.oci.image.layer.v1.tar+gzip"
                           : "application/vnd.oci.image.layer.v1.tar";
  diff::StringReader r(blob);
  auto res = diff::ApplyLayer(r, mt, jail.Root().string(),
                              {.mode = (n & 1) ? diff::WhiteoutMode::kOverlay
                                               : diff::WhiteoutMode::kNaive});
  if (res) {
    ASSERT_TRUE(res->digest.starts_with("sha256:")) << res->digest;
    ASSERT_GE(res->size, 0);
  } else {
    ASSERT_NE(res.error().code(), Code::kOk);
    ASSERT_FALSE(res.error().message().empty());
  }
  // Nothing outside the root moved: no file, mode, owner, size or link count.
  ASSERT_EQ(Listing(jail.dir(), jail.Root()), jail.before()) << "apply wrote outside its root";
}

TEST(Fuzz, LayerApply) {
  ApplyJail jail;
  uint64_t n = 0;
  fuzz::Run("apply", kCorpus / "apply", 300, 64 << 10,
            [&](const std::string& blob) { ApplyTarget(jail, n++, blob); });
}

}  // namespace
}  // namespace berth
