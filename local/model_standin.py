#!/usr/bin/env python3
"""A stand-in for the Anthropic Messages API, for `make e2e` (Python 3.11 standard library only).

    python3 local/model_standin.py PORT_FILE LOG_FILE

Listens on 127.0.0.1 on a free port, writes that port to PORT_FILE once it is listening, and
appends one JSON line per request to LOG_FILE. It plays a scripted two-turn session, the one the
recordings in shared/claude-code-2.1.328 were made with:

- `POST /v1/messages` whose last user message carries no `tool_result` and which offers the
  `Bash` tool: one tool use of Bash, `echo hello-from-claude` (stop_reason `tool_use`);
- any other `POST /v1/messages` (the turn after the tool ran, or a side request such as a
  title or a quota check without tools): the text "Done." (stop_reason `end_turn`);
- `POST /v1/messages/count_tokens`: a fixed count;
- anything else: 404 with an Anthropic-shaped error (and logged, so a new request shows up).

Streamed when the request asks for it (`"stream": true`, server-sent events as the API sends
them), plain JSON otherwise. Every answer reports the same usage as the recording (input 120,
output 30, cache read 900, cache creation 40) so the CLI computes a non-zero cost.
"""

import itertools
import os
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMAND = "echo hello-from-claude"
USAGE = {
    "input_tokens": 120,
    "output_tokens": 30,
    "cache_read_input_tokens": 900,
    "cache_creation_input_tokens": 40,
}
_ids = itertools.count(1)
_log_lock = threading.Lock()


def _id(prefix):
    return f"{prefix}_standin{next(_ids):06d}"


def _has_tool_result(body):
    messages = body.get("messages") or []
    if not messages:
        return False
    last = messages[-1]
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return False
    return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _offers_bash(body):
    return any(isinstance(t, dict) and t.get("name") == "Bash" for t in body.get("tools") or [])


def _blocks(body):
    """The content blocks to answer with, and the stop reason."""
    if _offers_bash(body) and not _has_tool_result(body):
        tool = {
            "type": "tool_use",
            "id": _id("toolu"),
            "name": "Bash",
            "input": {"command": COMMAND, "description": "Say hello"},
        }
        return [tool], "tool_use"
    return [{"type": "text", "text": "Done."}], "end_turn"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-standin/1"

    def log_message(self, fmt, *args):  # the JSON log below says it all
        pass

    def _record(self, **entry):
        entry = {"time": time.time(), "method": self.command, "path": self.path, **entry}
        with _log_lock, open(self.server.log_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def _send_json(self, status, payload, headers=()):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", _id("req"))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self):
        self._send_json(404, {"type": "error", "error": {"type": "not_found_error",
                                                         "message": f"stand-in: no {self.path}"}})

    def do_GET(self):
        self._record(status=404)
        self._not_found()

    def do_HEAD(self):
        self._record(status=404)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        if path == "/v1/messages/count_tokens":
            self._record(status=200, model=body.get("model"))
            self._send_json(200, {"input_tokens": USAGE["input_tokens"]})
            return
        if path != "/v1/messages":
            self._record(status=404)
            self._not_found()
            return
        blocks, stop = _blocks(body)
        model = body.get("model") or "claude-standin"
        self._record(status=200, model=model, stream=bool(body.get("stream")),
                     tools=len(body.get("tools") or []), answered=blocks[0]["type"],
                     tool_result_in=_has_tool_result(body))
        message = {"id": _id("msg"), "type": "message", "role": "assistant", "model": model,
                   "content": blocks, "stop_reason": stop, "stop_sequence": None,
                   "usage": dict(USAGE)}
        if body.get("stream"):
            self._stream(message)
        else:
            self._send_json(200, message)

    def _stream(self, message):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", _id("req"))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(name, data):
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        start = dict(message, content=[], stop_reason=None,
                     usage=dict(USAGE, output_tokens=1))
        event("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "tool_use":
                event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": dict(block, input={})})
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "input_json_delta",
                                                        "partial_json": json.dumps(block["input"])}})
            else:
                event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "text", "text": ""}})
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": block["text"]}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                "usage": {"output_tokens": USAGE["output_tokens"]}})
        event("message_stop", {"type": "message_stop"})


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: model_standin.py PORT_FILE LOG_FILE")
    port_file, log_file = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.log_file = log_file
    open(log_file, "a").close()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
