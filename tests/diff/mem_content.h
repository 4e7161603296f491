// An in-memory content::NamespacedStore for the differ tests: blobs and ingests per namespace,
// labels, the AlreadyExists/FailedPrecondition rules of Commit, and hooks to make writes fail.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "content/content.h"
#include "content/digest.h"
#include "string_reader.h"

namespace berth::diff {

class MemContent final : public content::NamespacedStore {
 public:
  struct Blob {
    std::string data;
    Labels labels;
  };
  using Key = std::pair<std::string, std::string>;  // (namespace, digest or ref)

  std::map<Key, Blob> blobs;
  std::map<Key, std::string> ingests;
  std::vector<std::string> aborted;  // refs passed to Abort
  bool fail_writes = false;          // Writer::Write answers ResourceExhausted

  void Put(const std::string& ns, const std::string& data, Labels labels = {}) {
    blobs[{ns, content::DigestOf(data)}] = {data, std::move(labels)};
  }

  Result<std::unique_ptr<content::ReaderAt>> OpenReader(const std::string& ns,
                                                        std::string_view digest) const override {
    auto it = blobs.find({ns, std::string(digest)});
    if (it == blobs.end()) return std::unexpected(NotFound("content " + std::string(digest)));
    return std::make_unique<StringReader>(it->second.data);
  }

  Result<content::Info> Info(const std::string& ns, std::string_view digest) const override {
    auto it = blobs.find({ns, std::string(digest)});
    if (it == blobs.end()) return std::unexpected(NotFound("content " + std::string(digest)));
    return content::Info{.digest = std::string(digest),
                         .size = static_cast<int64_t>(it->second.data.size()),
                         .labels = it->second.labels};
  }

  Result<content::Info> Update(const std::string& ns, const content::Info& info,
                               const std::vector<std::string>& paths) override {
    auto it = blobs.find({ns, info.digest});
    if (it == blobs.end()) return std::unexpected(NotFound("content " + info.digest));
    for (const auto& p : paths) {
      if (!p.starts_with("labels.")) return std::unexpected(InvalidArgument("path " + p));
      std::string key = p.substr(7);
      auto v = info.labels.find(key);
      if (v == info.labels.end()) {
        it->second.labels.erase(key);
      } else {
        it->second.labels[key] = v->second;
      }
    }
    return Info(ns, info.digest);
  }

  Result<std::vector<content::Info>> List(const std::string& ns,
                                          std::span<const std::string>) const override {
    std::vector<content::Info> out;
    for (const auto& [k, b] : blobs) {
      if (k.first == ns) out.push_back(*Info(ns, k.second));
    }
    return out;
  }

  berth::Status Delete(const std::string& ns, std::string_view,
                       std::string_view digest) override {
    return blobs.erase({ns, std::string(digest)}) ? berth::Status::Ok()
                                                  : NotFound("content " + std::string(digest));
  }

  Result<std::unique_ptr<content::Writer>> OpenWriter(const std::string& ns, std::string_view,
                                                      std::string_view ref, int64_t,
                                                      std::string_view) override {
    if (ref.empty()) return std::unexpected(InvalidArgument("ref must not be empty"));
    ingests.try_emplace({ns, std::string(ref)});
    return std::make_unique<Writer>(*this, ns, std::string(ref));
  }

  Result<content::IngestStatus> Status(const std::string& ns,
                                       std::string_view ref) const override {
    auto it = ingests.find({ns, std::string(ref)});
    if (it == ingests.end()) return std::unexpected(NotFound("ingest " + std::string(ref)));
    return content::IngestStatus{.ref = std::string(ref),
                                 .offset = static_cast<int64_t>(it->second.size())};
  }

  Result<std::vector<content::IngestStatus>> ListStatuses(
      const std::string& ns, std::span<const std::string>) const override {
    std::vector<content::IngestStatus> out;
    for (const auto& [k, d] : ingests) {
      if (k.first == ns) out.push_back(*Status(ns, k.second));
    }
    return out;
  }

  berth::Status Abort(const std::string& ns, std::string_view,
                      std::string_view ref) override {
    aborted.emplace_back(ref);
    return ingests.erase({ns, std::string(ref)}) ? berth::Status::Ok()
                                                 : NotFound("ingest " + std::string(ref));
  }

 private:
  class Writer final : public content::Writer {
   public:
    Writer(MemContent& store, std::string ns, std::string ref)
        : store_(store), ns_(std::move(ns)), ref_(std::move(ref)) {}
    Result<content::IngestStatus> Status() const override { return store_.Status(ns_, ref_); }
    std::string Digest() const override {
      return committed_.empty() ? content::DigestOf(Data()) : committed_;
    }
    berth::Status Write(std::string_view data) override {
      if (store_.fail_writes) return berth::Status(Code::kResourceExhausted, "disk full");
      store_.ingests[{ns_, ref_}] += data;
      return berth::Status::Ok();
    }
    berth::Status Truncate(int64_t size) override {
      if (size != 0) return InvalidArgument("truncate to non-zero");
      store_.ingests[{ns_, ref_}].clear();
      return berth::Status::Ok();
    }
    berth::Status Sync() override { return berth::Status::Ok(); }
    berth::Status Commit(int64_t size, std::string_view expected, const Labels& labels) override {
      std::string data = Data();
      std::string digest = content::DigestOf(data);
      if (size > 0 && size != static_cast<int64_t>(data.size())) {
        return FailedPrecondition("unexpected commit size");
      }
      if (!expected.empty() && expected != digest) {
        return FailedPrecondition("unexpected commit digest");
      }
      store_.ingests.erase({ns_, ref_});
      committed_ = digest;
      if (store_.blobs.contains({ns_, digest})) return AlreadyExists("content " + digest);
      store_.blobs[{ns_, digest}] = {std::move(data), labels};
      return berth::Status::Ok();
    }
    berth::Status Close() override { return berth::Status::Ok(); }

   private:
    std::string Data() const {
      auto it = store_.ingests.find({ns_, ref_});
      return it == store_.ingests.end() ? std::string() : it->second;
    }
    MemContent& store_;
    std::string ns_, ref_;
    std::string committed_;
  };
};

}  // namespace berth::diff
