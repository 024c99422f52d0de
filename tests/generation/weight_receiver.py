"""Plays the receiving end of SGLang's distributed weight update, in its own process.

Run as ``python weight_receiver.py PORT_FILE OUT_DIR [REFUSE]``: serves SGLang's control
endpoints on a free loopback port (written to PORT_FILE) and behaves as an SGLang server does,
by its documented protocol and the torch calls its servers make (no SGLang code):

- ``/init_weights_update_group`` joins the trainer's group at rank ``rank_offset`` with its own
  rendezvous at ``master_address:master_port``, the group name as store prefix, and answers only
  once the group is formed;
- ``/update_weights_from_distributed`` allocates one empty tensor per announced name with the
  announced dtype and shape, receives one broadcast from rank 0 into each, in order, and keeps
  them (saved to ``OUT_DIR/update-NNN.pt`` with the request);
- ``/pause_generation``, ``/flush_cache``, ``/continue_generation`` answer as an idle server.

With ``REFUSE`` = N, the N-th (from 0) ``/update_weights_from_distributed`` is answered with
``success: false`` without receiving its tensors, as a server that failed to load them does.

Every request is appended to ``OUT_DIR/requests.jsonl`` so the test can check the sequence.
"""

from __future__ import annotations

import datetime
import http.server
import json
import sys
import threading
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d as c10d
from torch.distributed.rendezvous import rendezvous


class Receiver:
    def __init__(self, out: Path, refuse: int | None = None) -> None:
        self.out = out
        self.refuse = refuse
        self.requests = 0
        self.group: dist.ProcessGroup | None = None
        self.updates = 0
        self.lock = threading.Lock()

    def init_group(self, body: dict[str, Any]) -> dict[str, Any]:
        timeout = datetime.timedelta(seconds=60)
        url = f"tcp://{body['master_address']}:{body['master_port']}"
        rank, world = body["rank_offset"], body["world_size"]
        store, _, _ = next(rendezvous(url, rank, world, timeout=timeout))
        store = c10d.PrefixStore(body["group_name"], store)
        group, _ = c10d._new_process_group_helper(
            world,
            rank,
            [],
            body["backend"],
            store,
            group_name=c10d.GroupName(body["group_name"]),
            timeout=timeout,
        )
        assert isinstance(group, dist.ProcessGroup)
        c10d._world.pg_group_ranks[group] = {r: r for r in range(world)}
        self.group = group
        return {"success": True, "message": "Succeeded to initialize custom process group."}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.group is None:
            return {"success": False, "message": "no weight update group"}
        with self.lock:
            index, self.requests = self.requests, self.requests + 1
        if index == self.refuse:
            return {"success": False, "message": "Failed to update parameter online: refused"}
        names, dtypes, shapes = body["names"], body["dtypes"], body["shapes"]
        if not len(names) == len(dtypes) == len(shapes):
            return {"success": False, "message": "names, dtypes and shapes differ in length"}
        tensors = [
            torch.empty(shape, dtype=getattr(torch, dtype))
            for dtype, shape in zip(dtypes, shapes, strict=True)
        ]
        works = [dist.broadcast(t, src=0, group=self.group, async_op=True) for t in tensors]
        for work in works:
            assert work is not None
            work.wait()
        with self.lock:
            path = self.out / f"update-{self.updates:03d}.pt"
            self.updates += 1
        torch.save({"request": body, "tensors": dict(zip(names, tensors, strict=True))}, path)
        return {"success": True, "message": "Succeeded to update parameter online."}


def main() -> None:
    port_file, out = Path(sys.argv[1]), Path(sys.argv[2])
    receiver = Receiver(out, int(sys.argv[3]) if len(sys.argv) > 3 else None)
    log = (out / "requests.jsonl").open("a")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            log.write(json.dumps({"path": self.path, "body": body}) + "\n")
            log.flush()
            reply: Any
            if self.path == "/init_weights_update_group":
                reply = receiver.init_group(body)
            elif self.path == "/update_weights_from_distributed":
                reply = receiver.update(body)
            elif self.path in ("/pause_generation", "/continue_generation"):
                reply = {"message": "ok", "status": "ok"}
            elif self.path == "/flush_cache":
                self._send(200, b"Cache flushed.\n", "text/plain")
                return
            else:
                self._send(404, b'{"detail": "Not Found"}', "application/json")
                return
            self._send(200, json.dumps(reply).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
