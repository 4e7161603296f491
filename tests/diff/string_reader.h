// A content::ReaderAt over bytes in memory: layer blobs the diff tests build themselves.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>

#include "content/content.h"

namespace berth::diff {

class StringReader final : public content::ReaderAt {
 public:
  explicit StringReader(std::string data) : data_(std::move(data)) {}
  int64_t Size() const override { return static_cast<int64_t>(data_.size()); }
  Result<size_t> ReadAt(char* buf, size_t n, int64_t off) override {
    if (off >= Size()) return size_t{0};
    size_t k = std::min(n, data_.size() - static_cast<size_t>(off));
    std::memcpy(buf, data_.data() + off, k);
    return k;
  }

 private:
  std::string data_;
};

}  // namespace berth::diff
