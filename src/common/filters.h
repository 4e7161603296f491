// containerd's filter language (package github.com/containerd/containerd/filters), which every
// List/Subscribe request uses:
//
//   filter    := selector ( ',' selector )*      all selectors must match (AND)
//   selector  := fieldpath [ op value ]          no op: the field is present
//   fieldpath := field ( '.' field )*
//   op        := '==' | '!=' | '~='
//
// Several filter strings in one request are OR-ed; an empty string matches everything.
// Parse errors are InvalidArgument with a message that points at the offending position.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace berth::filters {

// Answers the value of `fieldpath` on one object, or nullopt when the object has no such
// field. Each service writes one per object type (image, container, content, ...).
using Adaptor =
    std::function<std::optional<std::string>(std::span<const std::string> fieldpath)>;

enum class Op { kPresent, kEqual, kNotEqual, kMatches };

struct Selector {
  std::vector<std::string> fieldpath;
  Op op = Op::kPresent;
  std::string value;
  // kMatches only: `value` compiled once at parse time. Null when it doesn't compile, which
  // containerd accepts at parse time and then never matches.
  std::shared_ptr<const re2::RE2> regex;
};

// A parsed set of filters: OR over conjunctions of selectors. Default-constructed (or parsed
// from no strings / an empty string) it matches everything. Copyable; thread-compatible.
class Filter {
 public:
  Filter() = default;

  bool Match(const Adaptor& adaptor) const;
  bool MatchesAll() const { return alternatives_.empty(); }

  // Internals exposed for tests and diagnostics.
  const std::vector<std::vector<Selector>>& alternatives() const { return alternatives_; }

 private:
  friend Result<Filter> Parse(std::string_view);
  friend Result<Filter> ParseAll(std::span<const std::string>);
  std::vector<std::vector<Selector>> alternatives_;  // empty = match all
};

// One filter string (selectors joined by ',').
Result<Filter> Parse(std::string_view expr);
// Several filter strings, OR-ed. Any empty string among them makes the filter match all.
Result<Filter> ParseAll(std::span<const std::string> exprs);

// For map-valued fields such as `labels.<key>`: the rest of the fieldpath is joined with '.'
// and looked up in `map` (so `labels.foo.bar` finds key "foo.bar").
template <typename Map>
std::optional<std::string> LookupMap(const Map& map, std::span<const std::string> rest) {
  if (rest.empty()) return std::nullopt;
  std::string key;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (i) key += '.';
    key += rest[i];
  }
  auto it = map.find(key);
  if (it == map.end()) return std::nullopt;
  return std::string(it->second);
}

}  // namespace berth::filters
