"""A local stand-in for the Hugging Face Hub's two routes that ``vcli models pull`` uses, so the
download code runs for real offline (``HF_ENDPOINT=http://127.0.0.1:PORT``):

    GET  /api/models/ORG/NAME[/revision/REV]?blobs=True   the commit and each file's size, git blob
                                                          id and, for LFS files, sha256
    HEAD|GET /ORG/NAME/resolve/REV/PATH                   the file, with X-Repo-Commit and ETag

``files`` are what the repository says it holds; ``served`` (optional) what is actually sent for a
path, to play a corrupted transfer.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS = ("onnx/model.onnx", "onnx/model.onnx_data")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class FakeHub:
    def __init__(self, repo: str, files: dict[str, bytes], served: dict[str, bytes] | None = None):
        self.repo = repo
        self.files = files
        self.served = served or {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _route(self, head: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                api = re.fullmatch(rf"/api/models/{re.escape(hub.repo)}(/revision/[^/]+)?", path)
                if api:
                    siblings = []
                    for name, data in hub.files.items():
                        entry = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
                        if name in LFS:
                            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                            "pointerSize": 134}
                        siblings.append(entry)
                    body = json.dumps({"id": hub.repo, "modelId": hub.repo, "sha": COMMIT,
                                       "siblings": siblings}).encode()
                    return self._send(200, body, {"Content-Type": "application/json"}, head)
                resolve = re.fullmatch(rf"/{re.escape(hub.repo)}/resolve/([^/]+)/(.+)", path)
                if resolve and resolve.group(2) in hub.files:
                    name = resolve.group(2)
                    data = hub.served.get(name, hub.files[name])
                    etag = hashlib.sha256(hub.files[name]).hexdigest() if name in LFS else git_blob_id(hub.files[name])
                    return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"',
                                                  "Content-Type": "application/octet-stream"}, head)
                self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json",
                                                           "X-Error-Code": "EntryNotFound"}, head)

            def do_GET(self):
                self._route(False)

            def do_HEAD(self):
                self._route(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
