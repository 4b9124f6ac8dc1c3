#!/usr/bin/env python3
"""A Synod subprocess plugin: word and character statistics of a text.

Synod starts this script (from the node's plugins.dir) and keeps it running.
It reads one JSON request per line on stdin and writes one JSON answer per
line on stdout:

    in:  {"id": 7, "task_id": "...", "attempt": 1, "payload": {"text": "..."}}
    out: {"id": 7, "result": {...}}
     or: {"id": 7, "error": "what went wrong", "retryable": false}

Anything else printed to stdout or stderr goes to the node's log. When stdin
closes, the script ends. Load it with:

    synod plugin load --subprocess textstats.py --name textstats --version 1

Payload: {"text": str, "top": int (default 3), "sleep_ms": int (default 0)}.
`sleep_ms` makes the task slow on purpose (to try timeouts and crashes).
"""

import collections
import json
import os
import sys
import time


def run(payload, attempt):
    text = payload.get("text")
    if not isinstance(text, str):
        raise ValueError("payload.text must be a string")
    top = payload.get("top", 3)
    if not isinstance(top, int) or top < 0:
        raise ValueError("payload.top must be a non-negative integer")
    sleep_ms = payload.get("sleep_ms", 0)
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    words = text.lower().split()
    counts = collections.Counter(w.strip(".,;:!?\"'()") for w in words)
    counts.pop("", None)
    return {
        "words": len(words),
        "chars": len(text),
        "top": [[w, n] for w, n in counts.most_common(top)],
        "pid": os.getpid(),
        "attempt": attempt,
    }


def main():
    print(f"textstats {os.environ.get('SYNOD_PLUGIN_VERSION', '?')} ready", file=sys.stderr)
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            print(f"not a JSON request: {line[:80]!r}", file=sys.stderr)
            continue
        answer = {"id": request.get("id")}
        print(f"task {request.get('task_id')} attempt {request.get('attempt')} started", file=sys.stderr)
        try:
            answer["result"] = run(request.get("payload") or {}, request.get("attempt"))
        except ValueError as e:
            answer["error"] = str(e)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
