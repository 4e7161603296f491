// berth events: follow the daemon's event stream (Events.Subscribe), one line per event.
#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>

#include <iostream>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "github.com/containerd/containerd/api/events/container.pb.h"
#include "github.com/containerd/containerd/api/events/content.pb.h"
#include "github.com/containerd/containerd/api/events/image.pb.h"
#include "github.com/containerd/containerd/api/events/namespace.pb.h"
#include "github.com/containerd/containerd/api/events/snapshot.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"

namespace berth::cli {
namespace {

namespace eapi = containerd::services::events::v1;


// The payload as JSON text (proto field names, as ctr prints them), or nothing when its type
// is not compiled in or the bytes do not parse.
std::optional<std::string> DecodeEvent(const google::protobuf::Any& any) {
  // containerd's typeurl writes the bare full name; protobuf's Any adds a host prefix.
  std::string_view name = any.type_url();
  if (auto slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
  const auto* desc =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(name));
  if (!desc) return std::nullopt;
  const auto* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(desc);
  if (!proto) return std::nullopt;
  std::unique_ptr<google::protobuf::Message> msg(proto->New());
  if (!msg->ParseFromString(any.value())) return std::nullopt;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(*msg, &json, opts).ok()) return std::nullopt;
  return json;
}

int RunEvents(Cli& cli, const std::vector<std::string>& filters) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto stub = eapi::Events::NewStub((*client)->channel());
  eapi::SubscribeRequest req;
  for (const auto& f : filters) req.add_filters(f);
  auto ctx = (*client)->NewContext();
  auto reader = stub->Subscribe(ctx.get(), req);
  eapi::Envelope env;
  while (reader->Read(&env)) {
    std::string time = FormatRfc3339(ToTimePoint(env.timestamp()));
    std::optional<std::string> decoded;
    if (env.has_event()) decoded = DecodeEvent(env.event());
    if (cli.format() == Format::kJson) {
      nlohmann::json j = {{"timestamp", time},
                          {"namespace", env.namespace_()},
                          {"topic", env.topic()},
                          {"type", env.event().type_url()}};
      nlohmann::json payload = nullptr;
      if (decoded) {
        payload = nlohmann::json::parse(*decoded, nullptr, /*allow_exceptions=*/false);
        if (payload.is_discarded()) payload = nullptr;
      }
      j["event"] = payload;
      PrintJsonLine(j, std::cout);
    } else {
      std::cout << time << ' ' << env.namespace_() << ' ' << env.topic() << ' '
                << (decoded ? *decoded : env.event().type_url()) << std::endl;
    }
  }
  // The stream only ends when berthd ends it (a shutdown) or fails.
  Status s = FromGrpc(reader->Finish());
  return s.ok() ? 0 : ReportError(s.Wrap("event stream"));
}

}  // namespace

void AddEventsCommand(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand(
      "events", "print events as they happen (filters: topic==..., namespace==..., event.<field>)");
  auto filters = std::make_shared<std::vector<std::string>>();
  cmd->add_option("filters", *filters, "containerd filters");
  OnParsed(cmd, cli, [&cli, filters] { return RunEvents(cli, *filters); });
}

}  // namespace berth::cli
