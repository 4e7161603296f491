// Tar output the way containerd's layer writer produces it (Go archive/tar in PAX format):
// ustar headers (magic "ustar\0", version "00"), empty uname/gname, numeric fields as
// zero-padded octal; a PAX extended header ('x', named "<dir>/PaxHeaders.0/<base>") in front
// of an entry only when it needs one: a name or link name longer than 100 bytes or not ASCII
// ("path"/"linkpath"; the ustar field then keeps the ASCII bytes only), ids above 2097151
// ("uid"/"gid"), sizes of 8 GiB and more ("size"), times outside the octal field ("mtime"),
// plus the caller's records (xattrs as "SCHILY.xattr.<name>"). Records are sorted by key.
// A header marked `ustar_if_possible` (Go's format left unspecified, which containerd does
// for whiteouts) is written as plain ustar when its values fit, a long ASCII name split into
// the 155-byte prefix and 100-byte name fields; only otherwise as PAX. The archive ends with
// two zero blocks and no further padding.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::diff {

// Receives output bytes in order; an error stops the writer.
using ByteSink = std::function<Status(std::string_view)>;

struct TarHeader {
  std::string name;
  char type = '0';  // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
  std::string linkname;
  int64_t mode = 0;  // permission and setuid/setgid/sticky bits only
  int64_t uid = 0;
  int64_t gid = 0;
  int64_t size = 0;   // bytes of data that follow (regular files only)
  int64_t mtime = 0;  // unix seconds
  int64_t devmajor = 0;
  int64_t devminor = 0;
  std::map<std::string, std::string> pax;  // extra PAX records
  bool ustar_if_possible = false;
};

// Not thread-safe.
class TarWriter {
 public:
  explicit TarWriter(ByteSink sink) : sink_(std::move(sink)) {}

  // Starts an entry. The previous entry's data must be complete (Internal otherwise).
  // Errors: InvalidArgument (a device number that cannot be encoded), the sink's errors.
  Status WriteHeader(const TarHeader& h);
  // Appends data of the current entry; more than its size is Internal.
  Status WriteData(std::string_view data);
  // Writes the end-of-archive marker. The current entry must be complete.
  Status Close();

 private:
  Status Pad();
  Status WritePaxHeader(const std::string& name, const std::map<std::string, std::string>& recs);

  ByteSink sink_;
  int64_t remaining_ = 0;  // data bytes the current entry still expects
  int64_t written_ = 0;    // data bytes of the current entry so far
};

}  // namespace berth::diff
