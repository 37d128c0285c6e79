"""A stand-in for the pulumi CLI binary, packed into a release archive by the tests.

It answers the commands the Automation API sends (version, stack select/init, preview, up,
destroy, stack output, stack history) the way the CLI does: progress on stdout, engine events in
the --event-log file, stack state in the file backend (PULUMI_BACKEND_URL=file://<dir>). Each call
is appended to $STANDIN_PULUMI_LOG (argv and the backend/secrets environment), so tests see what
the project asked of the CLI. Outputs that `up` stores come from $STANDIN_PULUMI_OUTPUTS.
"""

import json
import os
import sys
from pathlib import Path

VERSION = os.environ.get("STANDIN_PULUMI_VERSION", "v3.272.0")
SEEN_ENV = ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE",
            "VIRTUAL_ENV")  # fmt: skip


def option(args: list, name: str):
    return args[args.index(name) + 1] if name in args else None


def state_file() -> Path:
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        sys.exit("error: the stand-in CLI keeps state in a file:// backend only")
    return Path(url[len("file://") :]) / ".standin-stacks.json"


def load() -> dict:
    path = state_file()
    return json.loads(path.read_text()) if path.exists() else {"stacks": {}, "current": None}


def save(state: dict) -> None:
    state_file().write_text(json.dumps(state))


def events(args: list, summary: dict) -> None:
    """The engine's summary and end events: over gRPC to the Automation API's event server
    (--event-log tcp://…, CLIs after 3.205) or into the event-log file (older ones)."""
    log = option(args, "--event-log")
    if not log:
        return
    sent = [{"sequence": 0, "timestamp": 0, "summaryEvent": {"resourceChanges": summary}},
            {"sequence": 1, "timestamp": 0, "cancelEvent": {}}]  # fmt: skip
    if log.startswith("tcp://"):
        import grpc
        from pulumi.runtime.proto import events_pb2, events_pb2_grpc

        with grpc.insecure_channel(log[len("tcp://") :]) as channel:
            stub = events_pb2_grpc.EventsStub(channel)
            stub.StreamEvents(iter([events_pb2.EventRequest(event=json.dumps(e)) for e in sent]))
        return
    with open(log, "a") as handle:
        handle.writelines(json.dumps(event) + "\n" for event in sent)


def main(args: list) -> int:
    with open(os.environ["STANDIN_PULUMI_LOG"], "a") as handle:
        seen = {k: os.environ[k] for k in SEEN_ENV if k in os.environ}
        handle.write(json.dumps({"argv": args, "env": seen, "cwd": os.getcwd()}) + "\n")
    args = [a for a in args if a != "--non-interactive"]  # a global flag, anywhere
    if args[:1] == ["version"]:
        print(VERSION)
        return 0
    state = load()
    stack = option(args, "--stack") or state["current"]
    if args[:2] == ["stack", "select"]:
        if stack not in state["stacks"]:
            print(f"error: no stack named '{stack}' found", file=sys.stderr)
            return 255
        state["current"] = stack
    elif args[:2] == ["stack", "init"]:
        state["stacks"][args[2]] = {"outputs": {}, "secrets": option(args, "--secrets-provider")}
        state["current"] = args[2]
    elif args[:1] == ["preview"]:
        print(
            f"Previewing update ({stack}):\n +  aws:s3:Bucket data create\nResources:\n    + 3 to create"
        )
        events(args, {"create": 3})
    elif args[:1] == ["up"]:
        print(f"Updating ({stack}):\n +  aws:s3:Bucket data created\nResources:\n    + 3 created")
        state["stacks"][stack]["outputs"] = json.loads(
            os.environ.get("STANDIN_PULUMI_OUTPUTS", "{}")
        )
        events(args, {"create": 3})
    elif args[:1] == ["destroy"]:
        print(f"Destroying ({stack}):\n -  aws:s3:Bucket data deleted")
        state["stacks"][stack]["outputs"] = {}
        events(args, {"delete": 3})
    elif args[:2] == ["stack", "output"]:
        print(json.dumps(state["stacks"][stack]["outputs"]))
    elif args[:2] == ["stack", "history"]:
        print(
            json.dumps(
                [
                    {
                        "kind": "update",
                        "startTime": "2026-12-02T00:00:00.000Z",
                        "endTime": "2026-12-02T00:00:01.000Z",
                        "message": "",
                        "environment": {},
                        "config": {},
                        "result": "succeeded",
                    }
                ]
            )
        )
    else:
        print(f"error: the stand-in CLI does not know `pulumi {' '.join(args)}`", file=sys.stderr)
        return 1
    save(state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
