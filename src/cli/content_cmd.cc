// berth content: ls, get, rm, label, ingest, active, abort — the Content service.
#include <google/protobuf/empty.pb.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "common/fs.h"
#include "github.com/containerd/containerd/api/services/content/v1/content.grpc.pb.h"

namespace berth::cli {
namespace {

namespace capi = containerd::services::content::v1;

constexpr size_t kChunkSize = 1 << 20;  // one WRITE per MiB

Result<std::unique_ptr<capi::Content::Stub>> Stub(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return capi::Content::NewStub(client->channel());
}

nlohmann::json InfoJson(const capi::Info& info) {
  return {{"digest", info.digest()},
          {"size", info.size()},
          {"created_at", TimestampJson(info.created_at())},
          {"updated_at", TimestampJson(info.updated_at())},
          {"labels", ToLabels(info.labels())}};
}

std::string LabelsCell(const Labels& labels) { return labels.empty() ? "-" : JoinLabels(labels); }

void PrintInfos(const Cli& cli, const std::vector<capi::Info>& infos, bool quiet) {
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& i : infos) arr.push_back(quiet ? nlohmann::json(i.digest()) : InfoJson(i));
    PrintJson(arr, std::cout);
    return;
  }
  if (quiet) {
    for (const auto& i : infos) std::cout << i.digest() << '\n';
    return;
  }
  Table table({"DIGEST", "SIZE", "AGE", "LABELS"});
  for (const auto& i : infos) {
    table.AddRow(
        {i.digest(), HumanSize(i.size()), AgeOf(i.created_at()), LabelsCell(ToLabels(i.labels()))});
  }
  table.Print(std::cout);
}

int RunList(Cli& cli, const std::vector<std::string>& filters, bool quiet) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  capi::ListContentRequest req;
  for (const auto& f : filters) req.add_filters(f);
  auto ctx = (*cli.client())->NewContext();
  auto reader = (*stub)->List(ctx.get(), req);
  std::vector<capi::Info> infos;
  capi::ListContentResponse resp;
  while (reader->Read(&resp)) {
    for (auto& i : *resp.mutable_info()) infos.push_back(std::move(i));
  }
  if (Status s = FromGrpc(reader->Finish()); !s.ok()) return ReportError(s);
  std::ranges::sort(infos, {}, &capi::Info::digest);
  PrintInfos(cli, infos, quiet);
  return 0;
}

Status WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return StatusFromErrno(errno, "write to stdout");
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

int RunGet(Cli& cli, const std::string& digest) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  capi::ReadContentRequest req;
  req.set_digest(digest);
  auto ctx = (*cli.client())->NewContext();
  auto reader = (*stub)->Read(ctx.get(), req);
  capi::ReadContentResponse resp;
  int64_t expect = 0;
  while (reader->Read(&resp)) {
    if (resp.offset() != expect) {
      ctx->TryCancel();
      reader->Finish();
      return ReportError(Status(Code::kDataLoss, "read " + digest + ": got data at offset " +
                                                     std::to_string(resp.offset()) + ", expected " +
                                                     std::to_string(expect)));
    }
    if (Status s = WriteAll(STDOUT_FILENO, resp.data()); !s.ok()) {
      ctx->TryCancel();
      reader->Finish();
      return ReportError(s);
    }
    expect += static_cast<int64_t>(resp.data().size());
  }
  if (Status s = FromGrpc(reader->Finish()); !s.ok()) return ReportError(s);
  return 0;
}

int RunRemove(Cli& cli, const std::vector<std::string>& digests) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  return RemoveEach(cli, digests, [&](const std::string& d, size_t) {
    capi::DeleteContentRequest req;
    req.set_digest(d);
    google::protobuf::Empty resp;
    return FromGrpc((*stub)->Delete(client->NewContext().get(), req, &resp));
  });
}

int RunLabel(Cli& cli, const std::string& digest, const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  capi::Info info;
  if (labels->empty()) {
    capi::InfoRequest req;
    req.set_digest(digest);
    capi::InfoResponse resp;
    if (Status s = FromGrpc((*stub)->Info(client->NewContext().get(), req, &resp)); !s.ok()) {
      return ReportError(s);
    }
    info = resp.info();
  } else {
    capi::UpdateRequest req;
    req.mutable_info()->set_digest(digest);
    for (const auto& [k, v] : *labels) {
      // An empty value is left out of the map: with its path in the mask, that removes it.
      if (!v.empty()) (*req.mutable_info()->mutable_labels())[k] = v;
      req.mutable_update_mask()->add_paths("labels." + k);
    }
    capi::UpdateResponse resp;
    if (Status s = FromGrpc((*stub)->Update(client->NewContext().get(), req, &resp)); !s.ok()) {
      return ReportError(s);
    }
    info = resp.info();
  }
  if (cli.format() == Format::kJson) {
    PrintJson(InfoJson(info), std::cout);
  } else {
    PrintInfos(cli, {info}, false);
  }
  return 0;
}

// A one-line progress bar on stderr, redrawn at most ten times a second.
class ProgressBar {
 public:
  ProgressBar(std::string ref, bool enabled) : ref_(std::move(ref)), enabled_(enabled) {}

  void Update(int64_t done, int64_t total, bool force = false) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    std::string rate =
        secs > 0.05
            ? HumanSize(static_cast<int64_t>(static_cast<double>(done - start_offset_) / secs)) +
                  "/s"
            : "";
    std::string right = total > 0 ? HumanSize(done) + " / " + HumanSize(total) : HumanSize(done);
    if (!rate.empty()) right += "  " + rate;
    int cols = Columns();
    std::string line = ref_;
    // Room for the widest right-hand part ("1023.9 MiB / 1023.9 MiB  1023.9 MiB/s"), so
    // the bar keeps its width as the numbers grow.
    int bar = cols - static_cast<int>(line.size()) - 9 - 40;
    if (total > 0 && bar >= 10) {
      bar = std::min(bar, 40);
      double frac = std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0);
      int fill = static_cast<int>(frac * bar);
      char pct[8];
      std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
      line += " [" + std::string(static_cast<size_t>(fill), '=') + (fill < bar ? ">" : "") +
              std::string(static_cast<size_t>(std::max(0, bar - fill - 1)), ' ') + "] " + pct;
    }
    line += "  " + right;
    if (static_cast<int>(line.size()) >= cols) line.resize(static_cast<size_t>(cols - 1));
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  void SetStart(int64_t offset) { start_offset_ = offset; }

  void Finish() {
    if (enabled_ && drawn_) std::fputs("\n", stderr);
    drawn_ = false;
  }

 private:
  static int Columns() {
    winsize ws{};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
    return 80;
  }

  std::string ref_;
  bool enabled_;
  bool drawn_ = false;
  int64_t start_offset_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

// Reads until `buf` is full or EOF; returns the byte count.
struct IngestArgs {
  std::string ref;
  std::string expected_digest;
  int64_t expected_size = 0;
  std::vector<std::string> labels;
};

using WriteStream = grpc::ClientReaderWriter<capi::WriteContentRequest, capi::WriteContentResponse>;

// One request, one response: the server answers every message on the Write stream.
Result<capi::WriteContentResponse> Exchange(WriteStream& stream,
                                            const capi::WriteContentRequest& req) {
  capi::WriteContentResponse resp;
  if (!stream.Write(req) || !stream.Read(&resp)) {
    // The server ended the stream; its status says why.
    stream.WritesDone();
    Status s = FromGrpc(stream.Finish());
    if (s.ok()) s = Status(Code::kUnknown, "write stream for " + Quote(req.ref()) + " ended early");
    return std::unexpected(s);
  }
  return resp;
}

// Gives up on a stream mid-way; Finish still reaps the call.
void Abandon(grpc::ClientContext& ctx, WriteStream& stream) {
  ctx.TryCancel();
  stream.Finish();
}

int PrintIngested(Cli& cli, const std::string& ref, const std::string& digest, int64_t size) {
  if (cli.format() == Format::kJson) {
    nlohmann::json j = {{"ref", ref}, {"digest", digest}};
    if (size >= 0) j["size"] = size;
    PrintJson(j, std::cout);
  } else {
    std::cout << digest << '\n';
  }
  return 0;
}

int RunIngest(Cli& cli, const IngestArgs& a) {
  if (a.ref.empty()) return ReportError(InvalidArgument("ingest needs a non-empty REF"));
  if (a.expected_size < 0) return ReportError(InvalidArgument("--expected-size must be >= 0"));
  auto labels = ParseLabelArgs(a.labels);
  if (!labels) return ReportError(labels.error());
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  auto ctx = (*cli.client())->NewContext();
  std::unique_ptr<WriteStream> stream = (*stub)->Write(ctx.get());

  // An ingest that exists already (with content) reports its offset: resume there.
  capi::WriteContentRequest stat;
  stat.set_action(capi::STAT);
  stat.set_ref(a.ref);
  stat.set_total(a.expected_size);
  stat.set_expected(a.expected_digest);
  auto st = Exchange(*stream, stat);
  if (!st) {
    // The blob is already there: nothing to do, as ctr sees it.
    if (st.error().code() == Code::kAlreadyExists && !a.expected_digest.empty()) {
      return PrintIngested(cli, a.ref, a.expected_digest, -1);
    }
    return ReportError(st.error());
  }

  // Stdin is only skipped into when it is a regular file we can seek; a pipe restarts at 0
  // (the first WRITE at offset 0 truncates the server's partial data).
  struct stat sb {};
  bool regular = ::fstat(STDIN_FILENO, &sb) == 0 && S_ISREG(sb.st_mode);
  int64_t offset = 0;
  if (st->offset() > 0 && regular) {
    off_t pos = ::lseek(STDIN_FILENO, 0, SEEK_CUR);
    if (pos >= 0 && sb.st_size - pos >= st->offset() &&
        ::lseek(STDIN_FILENO, static_cast<off_t>(st->offset()), SEEK_CUR) >= 0) {
      offset = st->offset();
    }
  }
  int64_t total_hint = a.expected_size > 0 ? a.expected_size : st->total();
  if (total_hint <= 0 && regular) {
    off_t pos = ::lseek(STDIN_FILENO, 0, SEEK_CUR);
    if (pos >= 0) total_hint = offset + (sb.st_size - pos);
  }

  ProgressBar bar(a.ref, ::isatty(STDERR_FILENO) == 1);
  bar.SetStart(offset);
  bar.Update(offset, total_hint, true);

  std::string digest_so_far = st->digest();
  std::string buf(kChunkSize, '\0');
  for (;;) {
    auto n = ReadFull(STDIN_FILENO, buf.data(), buf.size());
    if (!n) {
      bar.Finish();
      Abandon(*ctx, *stream);
      return ReportError(n.error());
    }
    if (*n == 0) break;
    capi::WriteContentRequest w;
    w.set_action(capi::WRITE);
    w.set_ref(a.ref);
    w.set_offset(offset);
    w.set_data(buf.data(), *n);
    auto resp = Exchange(*stream, w);
    if (!resp) {
      bar.Finish();
      return ReportError(resp.error().Wrap("write " + Quote(a.ref)));
    }
    offset += static_cast<int64_t>(*n);
    if (resp->offset() != offset) {
      bar.Finish();
      Abandon(*ctx, *stream);
      return ReportError(Status(Code::kDataLoss, "write " + Quote(a.ref) +
                                                     ": server is at offset " +
                                                     std::to_string(resp->offset()) +
                                                     ", expected " + std::to_string(offset)));
    }
    if (!resp->digest().empty()) digest_so_far = resp->digest();
    bar.Update(offset, total_hint);
    if (*n < buf.size()) break;  // short read: EOF
  }
  // An empty restart sends no WRITE: the COMMIT at offset 0 truncates just the same.
  bar.Update(offset, total_hint, true);
  bar.Finish();

  capi::WriteContentRequest commit;
  commit.set_action(capi::COMMIT);
  commit.set_ref(a.ref);
  commit.set_offset(offset);
  commit.set_total(a.expected_size > 0 ? a.expected_size : offset);
  commit.set_expected(a.expected_digest);
  for (const auto& [k, v] : *labels) (*commit.mutable_labels())[k] = v;
  auto done = Exchange(*stream, commit);
  if (!done) {
    if (done.error().code() == Code::kAlreadyExists) {
      // Committing what is already stored is no failure (containerd's content.Copy agrees).
      std::string d = !a.expected_digest.empty() ? a.expected_digest : digest_so_far;
      if (!d.empty()) return PrintIngested(cli, a.ref, d, offset);
    }
    return ReportError(done.error().Wrap("commit " + Quote(a.ref)));
  }
  stream->WritesDone();
  if (Status s = FromGrpc(stream->Finish()); !s.ok()) return ReportError(s);
  return PrintIngested(cli, a.ref, done->digest(), offset);
}

std::string Fraction(int64_t offset, int64_t total) {
  return HumanSize(offset) + "/" + (total > 0 ? HumanSize(total) : "?");
}

int RunActive(Cli& cli, const std::vector<std::string>& filters) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  capi::ListStatusesRequest req;
  for (const auto& f : filters) req.add_filters(f);
  capi::ListStatusesResponse resp;
  auto ctx = (*cli.client())->NewContext();
  if (Status s = FromGrpc((*stub)->ListStatuses(ctx.get(), req, &resp)); !s.ok()) {
    return ReportError(s);
  }
  std::vector<capi::Status> statuses(resp.statuses().begin(), resp.statuses().end());
  std::ranges::sort(statuses, {}, &capi::Status::ref);
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& s : statuses) {
      arr.push_back({{"ref", s.ref()},
                     {"offset", s.offset()},
                     {"total", s.total()},
                     {"expected", s.expected()},
                     {"started_at", TimestampJson(s.started_at())},
                     {"updated_at", TimestampJson(s.updated_at())}});
    }
    PrintJson(arr, std::cout);
    return 0;
  }
  Table table({"REF", "OFFSET/TOTAL", "STARTED", "UPDATED"});
  auto ago = [](const google::protobuf::Timestamp& t) {
    std::string age = AgeOf(t);
    return age == "-" ? age : age + " ago";
  };
  for (const auto& s : statuses) {
    table.AddRow(
        {s.ref(), Fraction(s.offset(), s.total()), ago(s.started_at()), ago(s.updated_at())});
  }
  table.Print(std::cout);
  return 0;
}

int RunAbort(Cli& cli, const std::vector<std::string>& refs) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  int code = 0;
  nlohmann::json aborted = nlohmann::json::array();
  for (const auto& ref : refs) {
    capi::AbortRequest req;
    req.set_ref(ref);
    google::protobuf::Empty resp;
    if (Status s = FromGrpc((*stub)->Abort(client->NewContext().get(), req, &resp)); !s.ok()) {
      PrintError(s);
      code = 1;
      continue;
    }
    if (cli.format() == Format::kJson) {
      aborted.push_back(ref);
    } else {
      std::cout << ref << '\n' << std::flush;
    }
  }
  if (cli.format() == Format::kJson) PrintJson(aborted, std::cout);
  return code;
}

}  // namespace

void AddContentCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("content", "manage the content store (blobs and ingests)");
  group->require_subcommand(1);

  struct Args {
    bool quiet = false;
    std::string digest;
    std::vector<std::string> list;  // filters, digests, refs or labels, by subcommand
    IngestArgs ingest;
  };
  auto args = std::make_shared<Args>();

  auto* ls = group->add_subcommand("ls", "list blobs (filters: digest==..., size==N, labels.k==v)");
  ls->alias("list");
  ls->add_option("filters", args->list, "containerd filters");
  ls->add_flag("-q,--quiet", args->quiet, "print only the digests");
  OnParsed(ls, cli, [&cli, args] { return RunList(cli, args->list, args->quiet); });

  auto* get = group->add_subcommand("get", "write a blob's bytes to stdout");
  get->add_option("digest", args->digest, "blob digest (sha256:...)")->required();
  OnParsed(get, cli, [&cli, args] { return RunGet(cli, args->digest); });

  auto* rm = group->add_subcommand("rm", "delete blobs");
  rm->alias("remove");
  rm->alias("delete");
  rm->add_option("digests", args->list, "blob digests")->required();
  OnParsed(rm, cli, [&cli, args] { return RunRemove(cli, args->list); });

  auto* label =
      group->add_subcommand("label", "set labels on a blob (key=value; key= removes) and print it");
  label->add_option("digest", args->digest, "blob digest")->required();
  label->add_option("labels", args->list, "labels as key=value");
  OnParsed(label, cli, [&cli, args] { return RunLabel(cli, args->digest, args->list); });

  auto* ingest = group->add_subcommand(
      "ingest",
      "store stdin as a blob under an ingest REF (resumes an unfinished one) and "
      "print its digest");
  ingest->add_option("ref", args->ingest.ref, "ingest reference (any unique key)")->required();
  ingest->add_option("--expected-digest", args->ingest.expected_digest,
                     "fail the commit unless the data has this digest");
  ingest->add_option("--expected-size", args->ingest.expected_size,
                     "fail the commit unless the data has this many bytes");
  ingest->add_option("--label", args->ingest.labels, "label the blob: key=value (repeatable)")
      ->allow_extra_args(false);  // --label a=b REF: REF is not a second label
  OnParsed(ingest, cli, [&cli, args] { return RunIngest(cli, args->ingest); });

  auto* active = group->add_subcommand("active", "list unfinished ingests");
  active->add_option("filters", args->list, "containerd filters (e.g. ref==name)");
  OnParsed(active, cli, [&cli, args] { return RunActive(cli, args->list); });

  auto* abort = group->add_subcommand("abort", "abandon unfinished ingests");
  abort->add_option("refs", args->list, "ingest references")->required();
  OnParsed(abort, cli, [&cli, args] { return RunAbort(cli, args->list); });
}

}  // namespace berth::cli
