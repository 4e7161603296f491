// berth start, exec, attach, kill, ps, pause, resume, rm and `berth tasks ...` (ctr's tasks/):
// flags and output only; the work is client/tasks.h.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "client/containers.h"
#include "client/tasks.h"

namespace berth::cli {
namespace {

using nlohmann::json;
namespace ttypes = containerd::v1::types;

// How long to wait for the shim to close a finished process's stdout/stderr on attach.
constexpr auto kOutputDrain = std::chrono::seconds(10);

struct ExecFlags {
  ExecOptions exec;
  bool detach = false;
  std::string exec_id;
  std::string fifo_dir;
  std::string id;
};

int RunStart(Cli& cli, const std::string& id, bool detach, const std::string& fifo_dir) {
  SignalForwarder forwarder([](const Status& s) { PrintError(s); });
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto c = GetContainer(**client, id);
  if (!c) return ReportError(c.error());
  RunTaskOptions ro;
  ro.detach = detach;
  ro.fifo_root = FifoRoot(cli, fifo_dir);
  ro.warn = [](const Status& s) { PrintError(s); };
  auto status = RunTask(**client, forwarder, *c, ro);
  if (!status) return ReportError(status.error());
  return static_cast<int>(*status);
}

int RunExec(Cli& cli, ExecFlags& f) {
  if (f.exec.args.empty()) return ReportError(InvalidArgument("give a command to run"));
  const ProcessRef p{f.id, f.exec_id.empty() ? RandomExecId() : f.exec_id};
  SignalForwarder forwarder([](const Status& s) { PrintError(s); });
  auto client_or = cli.client();
  if (!client_or) return ReportError(client_or.error());
  const Client& client = **client_or;
  auto c = GetContainer(client, f.id);
  if (!c) return ReportError(c.error());
  auto proc = ExecProcessSpec(*c, f.exec);
  if (!proc) return ReportError(proc.error());

  auto fifos = NewFifoSet(FifoRoot(cli, f.fifo_dir), p.exec_id, f.exec.tty);
  if (!fifos) return ReportError(fifos.error());
  auto io = IoCopier::Open(*fifos, [&client, p] { CloseStdin(client, p); });
  if (!io) {
    RemoveFifoSet(*fifos);
    return ReportError(io.error());
  }
  if (Status st = Exec(client, p, *proc, *fifos); !st.ok()) {
    io->reset();
    RemoveFifoSet(*fifos);
    return ReportError(st);
  }
  if (f.detach) {
    if (Status st = Start(client, p); !st.ok()) {
      (void)Delete(client, p);
      RemoveFifoSet(*fifos);
      return ReportError(st);
    }
    std::cout << p.exec_id << '\n';
    return 0;
  }
  forwarder.Target(&client, p, f.exec.tty);
  auto status = StartAndWait(client, p, *fifos, **io, f.exec.tty);
  forwarder.Target(nullptr, {}, false);
  io->reset();
  auto deleted = Delete(client, p);
  RemoveFifoSet(*fifos);
  if (!status) return ReportError(status.error());
  if (!deleted) return ReportError(deleted.error().Wrap("delete exec process"));
  return static_cast<int>(*status);
}

int RunAttach(Cli& cli, const std::string& id) {
  SignalForwarder forwarder([](const Status& s) { PrintError(s); });
  auto client_or = cli.client();
  if (!client_or) return ReportError(client_or.error());
  const Client& client = **client_or;
  const ProcessRef init{id, ""};
  auto p = GetProcess(client, init);
  if (!p) return ReportError(p.error());
  if (p->stdout().empty() && p->stdin().empty()) {
    return ReportError(FailedPrecondition("task " + Quote(id) + " has no FIFOs to attach to"));
  }
  // ctr attaches with plain streams: our stdin ending does not close the task's.
  auto io = IoCopier::Open(FifoPathsOf(*p), nullptr);
  if (!io) return ReportError(io.error());
  std::optional<RawTerminal> raw;
  if (p->terminal()) raw.emplace();
  forwarder.Target(&client, init, p->terminal());
  (*io)->Start();
  if (p->terminal()) ResizeToTerminal(client, init);
  auto status = Wait(client, init);
  (*io)->Wait(kOutputDrain);
  forwarder.Target(nullptr, {}, false);
  raw.reset();
  if (!status) return ReportError(status.error());
  return static_cast<int>(*status);
}

int RunList(Cli& cli, bool quiet) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto listed = ListTasks(**client);
  if (!listed) return ReportError(listed.error());
  std::vector<Process>& tasks = *listed;
  // ctr names a task by Process.id (the container's ID for an init process).
  auto name = [](const Process& p) { return p.id().empty() ? p.container_id() : p.id(); };
  std::sort(tasks.begin(), tasks.end(),
            [&](const auto& a, const auto& b) { return name(a) < name(b); });
  if (cli.format() == Format::kJson) {
    json arr = json::array();
    for (const auto& t : tasks) {
      if (quiet) {
        arr.push_back(name(t));
        continue;
      }
      json j = {{"id", name(t)}, {"pid", t.pid()}, {"status", TaskStatusName(t.status())}};
      if (t.status() == ttypes::STOPPED) {
        j["exit_status"] = t.exit_status();
        j["exited_at"] = TimestampJson(t.exited_at());
      }
      arr.push_back(std::move(j));
    }
    PrintJson(arr, std::cout);
    return 0;
  }
  if (quiet) {
    for (const auto& t : tasks) std::cout << name(t) << '\n';
    return 0;
  }
  Table table({"TASK", "PID", "STATUS"});
  for (const auto& t : tasks) {
    std::string status = TaskStatusName(t.status());
    if (t.status() == ttypes::STOPPED) {
      std::string age = AgeOf(t.exited_at());
      if (!age.empty())
        age[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(age[0])));
      status += " (exit " + std::to_string(t.exit_status()) + ", " + age + " ago)";
    }
    table.AddRow({name(t), std::to_string(t.pid()), status});
  }
  table.Print(std::cout);
  return 0;
}

std::string CommandOf(uint32_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  for (auto& ch : raw) {
    if (ch == '\0') ch = ' ';
  }
  return raw.empty() ? "-" : raw;
}

int RunPs(Cli& cli, const std::string& id) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto pids = ListPids(**client, id);
  if (!pids) return ReportError(pids.error());
  if (cli.format() == Format::kJson) {
    json arr = json::array();
    for (uint32_t pid : *pids) arr.push_back({{"pid", pid}, {"command", CommandOf(pid)}});
    PrintJson(arr, std::cout);
    return 0;
  }
  // The command line is read from this host's /proc (berthd is local).
  Table table({"PID", "COMMAND"});
  for (uint32_t pid : *pids) table.AddRow({std::to_string(pid), CommandOf(pid)});
  table.Print(std::cout);
  return 0;
}

int RunKill(Cli& cli, const std::vector<std::string>& ids, const std::string& signal, bool all,
            const std::string& exec_id) {
  if (all && !exec_id.empty()) {
    return ReportError(InvalidArgument("--all and --exec-id cannot be used together"));
  }
  std::optional<int> sig;
  if (!signal.empty()) {
    auto parsed = ParseSignal(signal);
    if (!parsed) return ReportError(parsed.error());
    sig = *parsed;
  }
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) -> Status {
    int n = SIGTERM;
    if (sig) {
      n = *sig;
    } else {
      // The image's stop signal, as ctr does.
      ASSIGN_OR_RETURN(Container c, GetContainer(**client, id));
      if (auto it = c.labels().find(kStopSignalLabel); it != c.labels().end()) {
        ASSIGN_OR_RETURN(n, ParseSignal(it->second));
      }
    }
    return Kill(**client, ProcessRef{id, exec_id}, n, all);
  });
}

int RunPauseResume(Cli& cli, const std::vector<std::string>& ids, bool pause) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) -> Status {
    return pause ? Pause(**client, id) : Resume(**client, id);
  });
}

int RunRemove(Cli& cli, const std::vector<std::string>& ids, bool force, bool task_only) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) -> Status {
    auto exit_status = RemoveTask(**client, id, force);
    if (exit_status && *exit_status != 0 && !force) {
      // As ctr: the exit status of a task removed after it ended is news worth a line.
      std::fprintf(stderr, "berth: task %s had exited with code %u\n", id.c_str(), *exit_status);
    }
    Status t = exit_status ? Status::Ok() : exit_status.error();
    if (task_only || (!t.ok() && t.code() != Code::kNotFound)) return t;
    ASSIGN_OR_RETURN(Container c, GetContainer(**client, id));
    return DeleteContainer(**client, c);
  });
}

}  // namespace

void AddTasksCommands(CLI::App& app, Cli& cli) {
  auto start_args = std::make_shared<ExecFlags>();
  auto add_start = [&](CLI::App* parent) {
    auto* start = parent->add_subcommand("start", "start a created container's task");
    start->add_flag("-d,--detach", start_args->detach, "start the task and return");
    start->add_option("--fifo-dir", start_args->fifo_dir, "directory for the stdio FIFOs");
    start->add_option("ID", start_args->id, "container ID")->required();
    OnParsed(start, cli, [&cli, start_args] {
      return RunStart(cli, start_args->id, start_args->detach, start_args->fifo_dir);
    });
  };

  auto exec_args = std::make_shared<ExecFlags>();
  auto add_exec = [&](CLI::App* parent) {
    auto* exec = parent->add_subcommand("exec", "run another process in a running container");
    SetUsage(exec, "[OPTIONS] ID COMMAND [ARG...]");
    exec->add_flag("-t,--tty", exec_args->exec.tty, "give the process a terminal");
    exec->add_flag("-d,--detach", exec_args->detach, "start the process and return");
    exec->add_option("--exec-id", exec_args->exec_id, "process ID (default: generated)");
    exec->add_option("--cwd", exec_args->exec.cwd, "working directory");
    exec->add_option("-e,--env", exec_args->exec.env,
                     "environment variable KEY=VALUE (repeatable)")
        ->allow_extra_args(false);
    exec->add_option("-u,--user", exec_args->exec.user, "numeric uid[:gid]");
    exec->add_option("--fifo-dir", exec_args->fifo_dir, "directory for the stdio FIFOs");
    exec->add_option("ID", exec_args->id, "container ID")->required();
    TakeArgv(exec);
    OnParsed(exec, cli, [&cli, exec_args, exec] {
      exec_args->exec.args = exec->remaining();
      return RunExec(cli, *exec_args);
    });
  };

  struct Common {
    std::vector<std::string> ids;
    std::string id;
    std::string signal;
    std::string exec_id;
    bool all = false;
    bool force = false;
    bool quiet = false;
  };
  auto common = std::make_shared<Common>();
  auto add_kill = [&](CLI::App* parent) {
    auto* kill = parent->add_subcommand(
        "kill", "send a signal to tasks (default: the image's stop signal, else SIGTERM)");
    kill->add_option("-s,--signal", common->signal, "signal name or number");
    kill->add_flag("-a,--all", common->all, "signal every process of the task");
    kill->add_option("--exec-id", common->exec_id, "signal this exec process instead");
    kill->add_option("ID", common->ids, "container IDs")->required();
    OnParsed(kill, cli, [&cli, common] {
      return RunKill(cli, common->ids, common->signal, common->all, common->exec_id);
    });
  };
  auto add_ps = [&](CLI::App* parent) {
    auto* ps = parent->add_subcommand("ps", "list a task's processes");
    ps->add_option("ID", common->id, "container ID")->required();
    OnParsed(ps, cli, [&cli, common] { return RunPs(cli, common->id); });
  };
  auto add_pause_resume = [&](CLI::App* parent) {
    auto* pause = parent->add_subcommand("pause", "freeze tasks");
    pause->add_option("ID", common->ids, "container IDs")->required();
    OnParsed(pause, cli, [&cli, common] { return RunPauseResume(cli, common->ids, true); });
    auto* resume = parent->add_subcommand("resume", "thaw paused tasks");
    resume->add_option("ID", common->ids, "container IDs")->required();
    OnParsed(resume, cli, [&cli, common] { return RunPauseResume(cli, common->ids, false); });
  };
  auto add_attach = [&](CLI::App* parent) {
    auto* attach = parent->add_subcommand("attach", "attach to a running task's stdio");
    attach->add_option("ID", common->id, "container ID")->required();
    OnParsed(attach, cli, [&cli, common] { return RunAttach(cli, common->id); });
  };
  auto add_ls = [&](CLI::App* parent) {
    auto* ls = parent->add_subcommand("ls", "list tasks");
    ls->alias("list");
    ls->add_flag("-q,--quiet", common->quiet, "print only the IDs");
    OnParsed(ls, cli, [&cli, common] { return RunList(cli, common->quiet); });
  };

  // Top level: the container verbs.
  add_start(&app);
  add_exec(&app);
  add_kill(&app);
  add_ps(&app);
  add_pause_resume(&app);
  add_attach(&app);
  auto* rm = app.add_subcommand("rm", "remove containers: their stopped task, snapshot and record");
  rm->add_option("ID", common->ids, "container IDs")->required();
  rm->add_flag("-f,--force", common->force, "kill a running task first");
  OnParsed(rm, cli, [&cli, common] { return RunRemove(cli, common->ids, common->force, false); });

  // berth tasks ...: ctr's `tasks` group.
  auto* tasks = app.add_subcommand("tasks", "manage tasks (a container's running processes)");
  tasks->alias("task");
  tasks->alias("t");
  tasks->require_subcommand(1);
  add_ls(tasks);
  add_start(tasks);
  add_exec(tasks);
  add_kill(tasks);
  add_ps(tasks);
  add_pause_resume(tasks);
  add_attach(tasks);
  auto* trm = tasks->add_subcommand("rm", "delete stopped tasks (the containers stay)");
  trm->alias("delete");
  trm->alias("del");
  trm->add_option("ID", common->ids, "container IDs")->required();
  trm->add_flag("-f,--force", common->force, "kill a running task first");
  OnParsed(trm, cli, [&cli, common] { return RunRemove(cli, common->ids, common->force, true); });
}

}  // namespace berth::cli
