// Validation rules shared by every service, as containerd applies them
// (pkg identifiers, labels): a bad value is InvalidArgument before it reaches a store or a path.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth {

using Labels = std::map<std::string, std::string>;

// Identifiers name namespaces, containers, tasks and event-topic components: 1–76 chars,
// runs of [A-Za-z0-9] joined by single '.', '_' or '-'. Safe to use as a path component.
inline constexpr size_t kMaxIdentifierLength = 76;
Status ValidateIdentifier(std::string_view id);

// A label's key plus value may hold at most 4096 bytes.
inline constexpr size_t kMaxLabelSize = 4096;
Status ValidateLabel(std::string_view key, std::string_view value);
Status ValidateLabels(const Labels& labels);

// Go's %q for the strings we echo back in messages, so they read like containerd's.
std::string Quote(std::string_view s);

}  // namespace berth
