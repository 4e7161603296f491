// The on-disk content store: digests, the writer lifecycle (write, resume, truncate, lock,
// commit checks), hostile digests (reliability-anchors T10), recovery after a crash (T11/T12).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "content/digest.h"
#include "content/local/store.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace berth::content {
namespace {

// Leaks `p` on purpose (a simulated crash) without failing a LeakSanitizer run.
template <typename T>
void IgnoreLeak(T* p) {
#if defined(__SANITIZE_ADDRESS__)
  __lsan_ignore_object(p);
#else
  (void)p;
#endif
}

using testing::Bytes;
using testing::Exists;
using testing::Slurp;
using testing::Spit;
using testing::TempDir;

TEST(ContentDigestTest, KnownVectors) {
  EXPECT_EQ(DigestOf(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DigestOf("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update("a");
  EXPECT_EQ(h.Digest(), DigestOf("a"));  // Digest() does not end the hash
  h.Update("bc");
  EXPECT_EQ(h.Digest(), DigestOf("abc"));
  h.Reset();
  EXPECT_EQ(h.Digest(), DigestOf(""));
}

// T10: every malformed digest is InvalidArgument before a path is built from it.
const char* const kBadDigests[] = {
    "",
    "sha256",
    "sha256:",
    ":e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256:../../../../etc/passwd",
    "sha256:../e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78",
    "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85\n",
};

TEST(ContentDigestTest, RejectsMalformedDigests) {
  for (const char* d : kBadDigests) {
    Status s = ValidateDigest(d);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << Quote(d);
  }
  EXPECT_TRUE(ValidateDigest(DigestOf("x")).ok());
}

class ContentLocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = LocalStore::Open(dir_.path() + "/content");
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    store_ = std::move(*s);
    store_->SetLockAttemptsForTest(1);
  }
  std::unique_ptr<Writer> Open(const std::string& ref, int64_t total = 0) {
    auto w = store_->OpenWriter(ref, total);
    EXPECT_TRUE(w.has_value()) << w.error().ToString();
    return w ? std::move(*w) : nullptr;
  }
  std::string ReadAll(const std::string& digest) {
    auto r = store_->OpenReader(digest);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    if (!r) return "";
    std::string out((*r)->Size(), '\0');
    auto n = (*r)->ReadAt(out.data(), out.size(), 0);
    EXPECT_TRUE(n.has_value());
    out.resize(n.value_or(0));
    return out;
  }
  std::string Root() const { return dir_.path() + "/content"; }

  TempDir dir_;
  std::unique_ptr<LocalStore> store_;
};

TEST_F(ContentLocalStoreTest, WriteAndCommit) {
  std::string data = Bytes(3 << 20);
  std::string dgst = DigestOf(data);
  auto w = Open("layer-1", static_cast<int64_t>(data.size()));
  ASSERT_TRUE(w);
  ASSERT_TRUE(Exists(store_->IngestPathForTest("layer-1") + "/data"));
  EXPECT_EQ(Slurp(store_->IngestPathForTest("layer-1") + "/ref"), "layer-1");
  EXPECT_EQ(Slurp(store_->IngestPathForTest("layer-1") + "/total"), std::to_string(data.size()));
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    ASSERT_TRUE(w->Write(std::string_view(data).substr(off, 1 << 20)).ok());
  }
  auto st = w->Status();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->offset, static_cast<int64_t>(data.size()));
  EXPECT_EQ(st->total, static_cast<int64_t>(data.size()));
  EXPECT_EQ(w->Digest(), dgst);
  ASSERT_TRUE(w->Commit(static_cast<int64_t>(data.size()), dgst, {}).ok());
  EXPECT_EQ(w->Digest(), dgst);

  std::string path = store_->BlobPathForTest(dgst);
  struct stat sb;
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 07777, 0444u);
  EXPECT_EQ(sb.st_size, static_cast<off_t>(data.size()));
  EXPECT_FALSE(Exists(store_->IngestPathForTest("layer-1")));
  auto info = store_->Info(dgst);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));
  EXPECT_GT(info->committed_at, 0);
  EXPECT_EQ(ReadAll(dgst), data);

  // Ranged reads, including a short read at the end.
  auto r = store_->OpenReader(dgst);
  ASSERT_TRUE(r.has_value());
  char buf[10];
  auto n = (*r)->ReadAt(buf, sizeof buf, static_cast<int64_t>(data.size()) - 4);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(std::string(buf, 4), data.substr(data.size() - 4));
  n = (*r)->ReadAt(buf, sizeof buf, static_cast<int64_t>(data.size()) + 5);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 0u);

  // The ref is free again.
  auto again = store_->OpenWriter("layer-1", 0);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)->Status()->offset, 0);
}

TEST_F(ContentLocalStoreTest, CommitWithoutExpectationsReportsDigest) {
  auto w = Open("import");
  ASSERT_TRUE(w->Write("hello").ok());
  ASSERT_TRUE(w->Commit(0, "", {}).ok());
  EXPECT_EQ(w->Digest(), DigestOf("hello"));
  EXPECT_EQ(ReadAll(DigestOf("hello")), "hello");
  // The writer is finished.
  EXPECT_EQ(w->Write("x").code(), Code::kFailedPrecondition);
}

TEST_F(ContentLocalStoreTest, EmptyBlob) {
  auto w = Open("empty");
  ASSERT_TRUE(w->Commit(0, DigestOf(""), {}).ok());
  EXPECT_EQ(ReadAll(DigestOf("")), "");
}

TEST_F(ContentLocalStoreTest, ResumeAfterCloseRehashes) {
  std::string data = Bytes(100000, 7);
  {
    auto w = Open("resume", static_cast<int64_t>(data.size()));
    ASSERT_TRUE(w->Write(data.substr(0, 40000)).ok());
    ASSERT_TRUE(w->Close().ok());
    ASSERT_TRUE(w->Close().ok());  // idempotent
  }
  auto st = store_->Status("resume");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->offset, 40000);
  EXPECT_EQ(st->total, static_cast<int64_t>(data.size()));
  auto w = Open("resume", static_cast<int64_t>(data.size()));
  auto ws = w->Status();
  EXPECT_EQ(ws->offset, 40000);
  EXPECT_EQ(ws->started_at, st->started_at);
  EXPECT_EQ(w->Digest(), DigestOf(data.substr(0, 40000)));
  ASSERT_TRUE(w->Write(data.substr(40000)).ok());
  ASSERT_TRUE(w->Commit(static_cast<int64_t>(data.size()), DigestOf(data), {}).ok());
  EXPECT_EQ(ReadAll(DigestOf(data)), data);
}

TEST_F(ContentLocalStoreTest, ResumeAfterRestartKeepsIngest) {
  std::string data = Bytes(50000, 3);
  {
    auto w = Open("restart", static_cast<int64_t>(data.size()));
    ASSERT_TRUE(w->Write(data.substr(0, 12345)).ok());
    // Writer dropped without Close: as if the daemon died (the bytes are in the file).
    // A crash: no Close, no unlock (leaks the writer on purpose; LeakSanitizer is told so).
    IgnoreLeak(w.release());
  }
  Reopen();  // a new daemon: no locks, recovery runs
  std::vector<IngestStatus> seen;
  ASSERT_TRUE(store_
                  ->WalkIngests([&](const IngestStatus& s) {
                    seen.push_back(s);
                    return Status::Ok();
                  })
                  .ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].ref, "restart");
  EXPECT_EQ(seen[0].offset, 12345);
  auto w = Open("restart", static_cast<int64_t>(data.size()));
  EXPECT_EQ(w->Status()->offset, 12345);
  ASSERT_TRUE(w->Write(data.substr(12345)).ok());
  ASSERT_TRUE(w->Commit(0, DigestOf(data), {}).ok());
}

TEST_F(ContentLocalStoreTest, TruncateStartsOver) {
  auto w = Open("trunc");
  ASSERT_TRUE(w->Write("garbage").ok());
  ASSERT_TRUE(w->Truncate(0).ok());
  EXPECT_EQ(w->Status()->offset, 0);
  EXPECT_EQ(w->Truncate(3).code(), Code::kInvalidArgument);
  ASSERT_TRUE(w->Write("good").ok());
  ASSERT_TRUE(w->Commit(4, DigestOf("good"), {}).ok());
  EXPECT_EQ(ReadAll(DigestOf("good")), "good");
}

TEST_F(ContentLocalStoreTest, DifferentTotalRestartsIngest) {
  {
    auto w = Open("total", 10);
    ASSERT_TRUE(w->Write("12345").ok());
  }
  auto w = Open("total", 20);
  EXPECT_EQ(w->Status()->offset, 0);
  EXPECT_EQ(w->Status()->total, 20);
  EXPECT_EQ(w->Digest(), DigestOf(""));
  ASSERT_TRUE(w->Write("abc").ok());
  ASSERT_TRUE(w->Close().ok());
  EXPECT_EQ(Slurp(store_->IngestPathForTest("total") + "/data"), "abc");
  // An unknown total resumes whatever is there.
  auto w2 = Open("total", 0);
  EXPECT_EQ(w2->Status()->offset, 3);
  EXPECT_EQ(w2->Status()->total, 20);
}

TEST_F(ContentLocalStoreTest, RefsTooLongToReadBackAreRefused) {
  auto w = store_->OpenWriter(std::string(kMaxBackendRefBytes + 1, 'r'), 0);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), Code::kInvalidArgument);
  std::string longest(kMaxBackendRefBytes, 'r');
  w = store_->OpenWriter(longest, 0);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  w->reset();
  auto st = store_->Status(longest);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_EQ(st->ref, longest);
}

// The GC role: unreferenced blobs and ingests go; kept ones, ingests a writer holds and
// entries that cannot be read stay, and none of them stops the sweep.
TEST_F(ContentLocalStoreTest, SweepRemovesWhatIsNotKept) {
  for (const char* data : {"keep", "drop"}) {
    auto w = store_->OpenWriter(std::string("blob-") + data, 0);
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE((*w)->Write(data).ok());
    ASSERT_TRUE((*w)->Commit(0, "", {}).ok());
  }
  for (const char* ref : {"kept-ingest", "dropped-ingest", "unreadable"}) {
    auto w = store_->OpenWriter(ref, 0);
    ASSERT_TRUE(w.has_value());
  }
  auto held = store_->OpenWriter("held", 0);
  ASSERT_TRUE(held.has_value());
  Spit(store_->IngestPathForTest("unreadable") + "/ref", std::string(kMaxBackendRefBytes + 1, 'u'));
  store_->SetLockAttemptsForTest(1);

  auto removed = store_->Sweep({DigestOf("keep")}, {"kept-ingest"});
  ASSERT_TRUE(removed.has_value()) << removed.error().ToString();
  EXPECT_EQ(*removed, 2);  // blob "drop", ingest "dropped-ingest"
  EXPECT_TRUE(store_->Info(DigestOf("keep")).has_value());
  EXPECT_EQ(store_->Info(DigestOf("drop")).error().code(), Code::kNotFound);
  EXPECT_TRUE(store_->Status("kept-ingest").has_value());
  EXPECT_EQ(store_->Status("dropped-ingest").error().code(), Code::kNotFound);
  EXPECT_TRUE(store_->Status("held").has_value());  // in use: left for a later sweep
  EXPECT_TRUE(Exists(store_->IngestPathForTest("unreadable")));
  held->reset();
  removed = store_->Sweep({DigestOf("keep")}, {"kept-ingest"});
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(*removed, 1);  // "held", released now
}

TEST_F(ContentLocalStoreTest, OneWriterPerRef) {
  auto w = Open("locked");
  ASSERT_TRUE(w);
  auto second = store_->OpenWriter("locked", 0);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), Code::kUnavailable);
  EXPECT_NE(second.error().message().find("ref locked locked for"), std::string::npos)
      << second.error().message();
  EXPECT_EQ(store_->Abort("locked").code(), Code::kUnavailable);
  // Other refs are independent.
  EXPECT_TRUE(store_->OpenWriter("other", 0).has_value());
  w.reset();  // closing releases the lock
  EXPECT_TRUE(store_->OpenWriter("locked", 0).has_value());
}

TEST_F(ContentLocalStoreTest, DigestMismatchCommitsNothing) {
  auto w = Open("bad-digest");
  ASSERT_TRUE(w->Write("actual bytes").ok());
  std::string wrong = DigestOf("other bytes");
  Status s = w->Commit(0, wrong, {});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find(wrong), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(DigestOf("actual bytes")), std::string::npos) << s.message();
  EXPECT_FALSE(Exists(store_->BlobPathForTest(DigestOf("actual bytes"))));
  EXPECT_EQ(store_->Info(DigestOf("actual bytes")).error().code(), Code::kNotFound);
  // Nothing committed, the ingest is still there and the ref is free to resume.
  auto st = store_->Status("bad-digest");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->offset, 12);
  EXPECT_TRUE(store_->OpenWriter("bad-digest", 0).has_value());
}

TEST_F(ContentLocalStoreTest, SizeMismatchCommitsNothing) {
  auto w = Open("bad-size");
  ASSERT_TRUE(w->Write("12345").ok());
  Status s = w->Commit(6, "", {});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("5"), std::string::npos);
  EXPECT_NE(s.message().find("6"), std::string::npos);
  EXPECT_FALSE(Exists(store_->BlobPathForTest(DigestOf("12345"))));
  std::set<std::string> blobs;
  ASSERT_TRUE(store_
                  ->Walk([&](const BlobInfo& b) {
                    blobs.insert(b.digest);
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_TRUE(blobs.empty());
}

TEST_F(ContentLocalStoreTest, CommitExistingBlobIsAlreadyExistsAndDropsIngest) {
  auto a = Open("a");
  auto b = Open("b");
  ASSERT_TRUE(a->Write("same").ok());
  ASSERT_TRUE(b->Write("same").ok());
  ASSERT_TRUE(a->Commit(4, DigestOf("same"), {}).ok());
  Status s = b->Commit(4, DigestOf("same"), {});
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_EQ(b->Digest(), DigestOf("same"));
  EXPECT_FALSE(Exists(store_->IngestPathForTest("b")));
  EXPECT_EQ(ReadAll(DigestOf("same")), "same");
}

TEST_F(ContentLocalStoreTest, BadDigestsNeverReachTheFileSystem) {
  // A file where a traversal would land, to prove nothing resolves to it.
  Spit(dir_.path() + "/secret", "x");
  for (const char* d : kBadDigests) {
    EXPECT_EQ(store_->Info(d).error().code(), Code::kInvalidArgument) << Quote(d);
    EXPECT_EQ(store_->OpenReader(d).error().code(), Code::kInvalidArgument) << Quote(d);
    EXPECT_EQ(store_->Delete(d).code(), Code::kInvalidArgument) << Quote(d);
  }
  EXPECT_TRUE(Exists(dir_.path() + "/secret"));
  // Commit refuses a malformed expected digest as a mismatch, never as a path.
  auto w = Open("x");
  ASSERT_TRUE(w->Write("x").ok());
  EXPECT_EQ(w->Commit(0, "sha256:../../secret", {}).code(), Code::kFailedPrecondition);
}

TEST_F(ContentLocalStoreTest, RefsAreHashedNotPaths) {
  for (const std::string& ref :
       std::vector<std::string>{"../../escape", "a/b/c", std::string("nul\0byte", 8), "..", "."}) {
    auto w = Open(ref);
    ASSERT_TRUE(w) << ref;
    ASSERT_TRUE(w->Write(ref).ok());
    ASSERT_TRUE(w->Close().ok());
    auto st = store_->Status(ref);
    ASSERT_TRUE(st.has_value()) << ref;
    EXPECT_EQ(st->ref, ref);
  }
  EXPECT_FALSE(Exists(dir_.path() + "/escape"));
  EXPECT_EQ(store_->OpenWriter("", 0).error().code(), Code::kInvalidArgument);
}

TEST_F(ContentLocalStoreTest, AbortAndDelete) {
  auto w = Open("gone");
  ASSERT_TRUE(w->Write("data").ok());
  w.reset();
  ASSERT_TRUE(store_->Abort("gone").ok());
  EXPECT_FALSE(Exists(store_->IngestPathForTest("gone")));
  EXPECT_EQ(store_->Abort("gone").code(), Code::kNotFound);
  EXPECT_EQ(store_->Status("gone").error().code(), Code::kNotFound);

  auto c = Open("c");
  ASSERT_TRUE(c->Write("blob").ok());
  ASSERT_TRUE(c->Commit(0, "", {}).ok());
  ASSERT_TRUE(store_->Delete(DigestOf("blob")).ok());
  EXPECT_EQ(store_->Info(DigestOf("blob")).error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Delete(DigestOf("blob")).code(), Code::kNotFound);
}

TEST_F(ContentLocalStoreTest, WalkListsBlobs) {
  std::set<std::string> want;
  for (int i = 0; i < 5; ++i) {
    std::string data = "blob" + std::to_string(i);
    auto w = Open("w" + std::to_string(i));
    ASSERT_TRUE(w->Write(data).ok());
    ASSERT_TRUE(w->Commit(0, "", {}).ok());
    want.insert(DigestOf(data));
  }
  std::set<std::string> got;
  ASSERT_TRUE(store_
                  ->Walk([&](const BlobInfo& b) {
                    got.insert(b.digest);
                    EXPECT_EQ(b.size, 5);
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(got, want);
  // Walk stops at the callback's error.
  int calls = 0;
  Status s = store_->Walk([&](const BlobInfo&) {
    ++calls;
    return Internal("stop");
  });
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_EQ(calls, 1);
}

// T12: what an interrupted commit or ingest setup leaves behind is cleaned at open, and an
// intact ingest stays resumable.
TEST_F(ContentLocalStoreTest, RecoveryRemovesStrays) {
  {
    auto keep = Open("keep");
    ASSERT_TRUE(keep->Write("partial").ok());
    auto committed = Open("committed");
    ASSERT_TRUE(committed->Write("done").ok());
  }
  std::string keep_dir = store_->IngestPathForTest("keep");
  std::string committed_dir = store_->IngestPathForTest("committed");
  store_.reset();
  // A commit that renamed the data away but died before removing the ingest dir.
  ASSERT_EQ(::unlink((committed_dir + "/data").c_str()), 0);
  // A half-written replacement of updatedat, a half-made ingest, junk in blobs/.
  Spit(keep_dir + "/updatedat.tmp", "2024-");
  ASSERT_EQ(::mkdir((Root() + "/ingest/.tmp-abc-123").c_str(), 0700), 0);
  Spit(Root() + "/ingest/.tmp-abc-123/ref", "half");
  Spit(Root() + "/blobs/sha256/.tmp-blob", "junk");
  Spit(Root() + "/blobs/sha256/not-a-digest", "junk");
  ASSERT_EQ(::mkdir((Root() + "/ingest/" + std::string(64, 'a')).c_str(), 0700), 0);

  Reopen();
  EXPECT_TRUE(Exists(keep_dir + "/data"));
  EXPECT_FALSE(Exists(keep_dir + "/updatedat.tmp"));
  EXPECT_FALSE(Exists(committed_dir));
  EXPECT_FALSE(Exists(Root() + "/ingest/.tmp-abc-123"));
  EXPECT_FALSE(Exists(Root() + "/blobs/sha256/.tmp-blob"));
  EXPECT_FALSE(Exists(Root() + "/blobs/sha256/not-a-digest"));
  EXPECT_FALSE(Exists(Root() + "/ingest/" + std::string(64, 'a')));
  auto st = store_->Status("keep");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->offset, 7);
  EXPECT_EQ(store_->Status("committed").error().code(), Code::kNotFound);
}

TEST_F(ContentLocalStoreTest, TimestampsSurviveReopen) {
  int64_t before = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  {
    auto w = Open("times");
    ASSERT_TRUE(w->Write("x").ok());
  }
  auto st1 = store_->Status("times");
  ASSERT_TRUE(st1.has_value());
  EXPECT_GE(st1->started_at, before);
  EXPECT_GE(st1->updated_at, st1->started_at);
  Reopen();
  auto st2 = store_->Status("times");
  ASSERT_TRUE(st2.has_value());
  EXPECT_EQ(st2->started_at, st1->started_at);  // nanosecond precision on disk
}

}  // namespace
}  // namespace berth::content
