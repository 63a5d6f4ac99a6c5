"""A loopback server that speaks just the part of the Hub HTTP API that huggingface_hub, transformers and
datasets call in seqmeta's tests; it tests seqmeta's use of those clients, not the Hub.

Standard library only. Repositories live in memory: repos -> branches -> commits -> {path: Blob}. A new repo
gets an initial commit holding ``.gitattributes`` as on the Hub. Point the clients at it with
``HF_ENDPOINT=server.url``, ``HF_HUB_DISABLE_XET=1`` (uploads then use the legacy LFS "basic" transfer) and any
``HF_TOKEN``; the clients read these at import time, so run them in a subprocess (see ``hub_env`` in conftest).

Endpoints (``{repo}`` is ``{models|datasets}/{namespace}/{name}``):

    GET  /api/whoami-v2                         POST /api/validate-yaml (always valid)
    POST /api/repos/create                      POST /api/{repo}/branch/{branch}
    GET  /api/{repo}[/revision/{rev}]           GET  /api/{repo}/tree/{rev}[/{path}]
    POST /api/{repo}/paths-info/{rev}           POST /api/{repo}/preupload/{rev}
    POST /api/{repo}/commit/{rev} (NDJSON)      PUT  /lfs-upload/{sha256} (the href the batch answer gives)
    POST /[datasets/]{ns}/{name}.git/info/lfs/objects/batch (basic transfer, no verify step)
    HEAD|GET /[datasets/]{ns}/{name}/resolve/{rev}/{path} (with Range)

Not there on purpose: Spaces, pull requests, tags, refs listing, ``files_metadata``, Xet, multipart LFS, the LFS
verify step, access control (any token is accepted), pagination (one page), the dataset viewer (``load_dataset``
asks ``datasets-server.127.0.0.1``, which does not resolve; datasets then reads the files). Unknown requests get a
plain 404, requests it cannot parse a 400; both are listed in ``server.unhandled``. ``server.requests`` logs
``(method, path, route, status)``.

Fault injection: ``server.fail_next("commit")`` makes the next commit request fail with a TCP reset (the client
raises ``httpx2.ReadError``), ``server.fail_next("lfs_upload", error=403)`` answers the next LFS PUT with HTTP 403,
``server.fail_next("resolve", error="truncate")`` sends the next file download's headers and half its body, then
drops the connection (a download cut mid-way; HEAD requests do not take this fault). Route names are the keys of
``ROUTES``; a failed request changes nothing. huggingface_hub retries 5xx answers and network errors itself on
preupload, the LFS batch and PUT and the listings (5 retries, 1+2+4+8+8 s apart), not on the commit nor on 4xx
answers: inject on ``commit``, or a 4xx on ``lfs_upload``, to make a push fail at once.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

USER = "tester"
LFS_PATTERNS = (
    *("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.npy", "*.npz", "*.pkl", "*.onnx"),
    *("*.parquet", "*.arrow", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.zip", "*.gz", "*.tar", "*.msgpack"),
)
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub puts any file of 10 MB or more in LFS, and binary files
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
URL_PREFIX = {"model": "", "dataset": "datasets/"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HubError(Exception):
    """An error answer: HTTP status, the ``X-Error-Code`` the client maps to an exception, headers, JSON fields."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None, **body):
        super().__init__(message)
        self.status, self.code, self.headers, self.body = status, code, headers or {}, body


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool
    sha256: str
    oid: str  # git blob id: of the content, or of the LFS pointer file
    pointer_size: int

    @classmethod
    def make(cls, data: bytes, lfs: bool) -> Blob:
        sha = hashlib.sha256(data).hexdigest()
        stored = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
        stored = stored if lfs else data
        return cls(data, lfs, sha, hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest(), len(stored))

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass
class Commit:
    oid: str
    title: str
    date: str
    files: dict[str, Blob]  # never changed once committed


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    created: str = field(default_factory=_now)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        oid = self.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return self.commits[oid]


class HubStorage:
    """The repositories, and the LFS objects uploaded (content-addressed, shared by all repos)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self._count = 0

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        if (repo_type, repo_id) not in self.repos:
            raise HubError(404, "RepoNotFound", "Repository not found")
        return self.repos[repo_type, repo_id]

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> bool:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return False
            repo = self.repos[repo_type, repo_id] = Repo(repo_type, repo_id, private)
            self._add_commit(repo, "main", "initial commit", {".gitattributes": Blob.make(GITATTRIBUTES, False)})
            return True

    def create_branch(self, repo: Repo, branch: str, start: str) -> bool:
        with self.lock:
            if branch in repo.branches:
                return False
            repo.branches[branch] = repo.resolve(start).oid
            return True

    def commit(self, repo: Repo, branch: str, header: dict, operations: list[tuple[str, dict]]) -> Commit:
        with self.lock:
            if branch not in repo.branches:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch} (commits go to a branch)")
            head = repo.commits[repo.branches[branch]]
            if header.get("parentCommit") and not head.oid.startswith(header["parentCommit"]):
                raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for key, value in operations:
                path = value["path"]
                if key == "file":
                    files[path] = Blob.make(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    if value["oid"] not in self.lfs_objects:
                        raise HubError(400, None, f"LFS object {value['oid']} of {path} was never uploaded")
                    files[path] = Blob.make(self.lfs_objects[value["oid"]], lfs=True)
                elif key in ("deletedFile", "deletedFolder"):
                    gone = [p for p in files if p == path or (key == "deletedFolder" and p.startswith(path + "/"))]
                    if not gone:
                        raise HubError(404, "EntryNotFound", f"{path} does not exist in {branch}")
                    for p in gone:
                        del files[p]
                else:
                    raise HubError(400, None, f"commit operation {key!r} is not supported by the test hub")
            return self._add_commit(repo, branch, header.get("summary", ""), files)

    def _add_commit(self, repo: Repo, branch: str, title: str, files: dict[str, Blob]) -> Commit:
        self._count += 1
        oid = hashlib.sha1(f"{repo.type}/{repo.id}/{self._count}/{time.time_ns()}".encode()).hexdigest()
        repo.commits[oid] = Commit(oid, title, _now(), files)
        repo.branches[branch] = oid
        return repo.commits[oid]


def _file_info(path: str, blob: Blob) -> dict:
    info = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
    if blob.lfs:
        info["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": blob.pointer_size}
    return info


def _path_info(commit: Commit, path: str) -> dict | None:
    """The tree / paths-info entry of a file or folder, None if there is none."""
    if path in commit.files:
        return _file_info(path, commit.files[path])
    inside = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
    if not inside:
        return None
    return {"type": "directory", "oid": hashlib.sha1(repr(inside).encode()).hexdigest(), "path": path}


def _flag(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true")


_REPO = r"/api/(?P<type>model|dataset)s/(?P<repo>[^/]+/[^/]+)"
_GIT_REPO = r"/(?:(?P<prefix>datasets)/)?(?P<repo>[^/]+/[^/]+)"
ROUTES = {  # name: (methods, path pattern); groups are percent-decoded before use
    "whoami": ("GET", r"/api/whoami-v2"),
    "validate_yaml": ("POST", r"/api/validate-yaml"),
    "create_repo": ("POST", r"/api/repos/create"),
    "repo_info": ("GET", _REPO + r"(?:/revision/(?P<rev>[^/]+))?"),
    "create_branch": ("POST", _REPO + r"/branch/(?P<rev>[^/]+)"),
    "tree": ("GET", _REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"),
    "paths_info": ("POST", _REPO + r"/paths-info/(?P<rev>[^/]+)"),
    "preupload": ("POST", _REPO + r"/preupload/(?P<rev>[^/]+)"),
    "commit": ("POST", _REPO + r"/commit/(?P<rev>[^/]+)"),
    "lfs_batch": ("POST", _GIT_REPO + r"\.git/info/lfs/objects/batch"),
    "lfs_upload": ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})"),
    "resolve": ("HEAD GET", _GIT_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
}
_COMPILED = [(name, methods.split(), re.compile(pattern)) for name, (methods, pattern) in ROUTES.items()]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    timeout = 60
    server: _HTTPServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        route, groups = None, {}
        for name, methods, pattern in _COMPILED:
            if self.command in methods and (match := pattern.fullmatch(url.path)):
                route, groups = name, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                break
        self.route, self.body, self.query = route, self._read_body(), parse_qs(url.query)
        hub = self.server.hub
        fault = hub._take_fault(route, self.command)
        if fault == "reset":
            return self._reset()
        self.truncate = fault == "truncate"
        try:
            if fault not in (None, "truncate"):
                raise HubError(int(fault), None, f"injected fault ({route})")
            if route is None:
                print(f"hub_server: unhandled {self.command} {self.path}", file=sys.stderr)
                hub.unhandled.append(f"{self.command} {self.path}")
                raise HubError(404, None, f"{self.command} {url.path} is not implemented by the test hub")
            try:
                getattr(self, "_" + route)(**groups)
            except (KeyError, TypeError, ValueError) as e:  # a request this server does not understand
                traceback.print_exc()
                hub.unhandled.append(f"{self.command} {self.path}: {e!r}")
                raise HubError(400, None, f"the test hub cannot handle this request: {e!r}") from e
        except HubError as e:
            headers = {**e.headers, "X-Error-Message": str(e)}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json({"error": str(e), **e.body}, e.status, headers)

    do_HEAD = do_POST = do_PUT = do_GET

    # -- plumbing ------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, data: bytes, headers: dict) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and getattr(self, "truncate", False):  # half the body, then the line drops
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.server.hub.requests.append((self.command, self.path, self.route, "truncated"))
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(data)
        self.server.hub.requests.append((self.command, self.path, self.route, status))

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, answering nothing (the request is not applied)."""
        self.server.hub.requests.append((self.command, self.path, self.route, "reset"))
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True

    def log_message(self, format, *args) -> None:  # quiet: server.requests has the log
        pass

    def _repo(self, repo: str, type: str | None = None, prefix: str | None = None, **_) -> Repo:
        repo_type = type or ("dataset" if prefix else "model")
        return self.server.hub.storage.repo(repo_type, repo)

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.server.hub.url}/{URL_PREFIX[repo.type]}{repo.id}"

    # -- account and repositories ---------------------------------------------------------------------------
    def _whoami(self) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, None, "Invalid credentials in Authorization header")
        user = {"type": "user", "id": "0" * 24, "name": USER, "fullname": "Test User", "email": f"{USER}@example.com"}
        token = {"displayName": "test-token", "role": "write", "createdAt": _now()}
        self._json({**user, "isPro": False, "orgs": [], "auth": {"type": "access_token", "accessToken": token}})

    def _validate_yaml(self) -> None:
        self._json({"errors": [], "warnings": []})

    def _create_repo(self) -> None:
        body = json.loads(self.body)
        repo_type, repo_id = body.get("type") or "model", f"{body.get('organization') or USER}/{body['name']}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        created = self.server.hub.storage.create_repo(repo_type, repo_id, private)
        url = f"{self.server.hub.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if not created:
            raise HubError(409, None, f"You already created this {repo_type} repo", url=url)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _repo_info(self, rev: str = "main", **g) -> None:
        repo = self._repo(**g)
        commit = repo.resolve(rev)
        siblings = [{"rfilename": p} for p in sorted(commit.files)]
        info = {"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "author": repo.id.split("/")[0]}
        info |= {"sha": commit.oid, "private": repo.private, "gated": False, "disabled": False, "tags": []}
        info |= {"lastModified": commit.date, "createdAt": repo.created, "downloads": 0, "likes": 0}
        self._json({**info, "siblings": siblings})

    def _create_branch(self, rev: str, **g) -> None:
        repo = self._repo(**g)
        start = json.loads(self.body or b"{}").get("startingPoint") or "main"
        if not self.server.hub.storage.create_branch(repo, rev, start):
            raise HubError(409, None, f"Reference refs/heads/{rev} already exists")
        self._json({})

    # -- listing ---------------------------------------------------------------------------------------------
    def _tree(self, rev: str, path: str = "", **g) -> None:
        commit = self._repo(**g).resolve(rev)
        base = path.strip("/")
        prefix = base + "/" if base else ""
        paths = [p for p in commit.files if p.startswith(prefix)]
        if base and not paths:
            raise HubError(404, "EntryNotFound", f"{base} does not exist at {rev}")
        entries = {}
        for p in paths:
            parts = p[len(prefix) :].split("/")
            for depth in range(1, (len(parts) if _flag(self.query.get("recursive")) else 1) + 1):
                sub = prefix + "/".join(parts[:depth])
                entries[sub] = entries.get(sub) or _path_info(commit, sub)
        self._json([entries[p] for p in sorted(entries)])

    def _paths_info(self, rev: str, **g) -> None:
        commit = self._repo(**g).resolve(rev)
        paths = parse_qs(self.body.decode()).get("paths", [])
        self._json([info for p in paths if (info := _path_info(commit, p.strip("/")))])

    # -- upload ----------------------------------------------------------------------------------------------
    def _preupload(self, rev: str, **g) -> None:
        commit = self._repo(**g).resolve(rev)
        answer = []
        for f in json.loads(self.body)["files"]:
            lfs = f["size"] >= LFS_MIN_SIZE or b"\0" in base64.b64decode(f["sample"])
            lfs = lfs or any(fnmatch.fnmatch(f["path"].rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
            old = commit.files.get(f["path"])  # the client skips files whose oid did not change
            oid = None if old is None else old.sha256 if old.lfs else old.oid
            answer.append(
                {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json({"files": answer})

    def _lfs_batch(self, **g) -> None:
        self._repo(**g)
        request, objects = json.loads(self.body), []
        for obj in request["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.hub.storage.lfs_objects:  # else: already there, nothing to send
                answer["actions"] = {"upload": {"href": f"{self.server.hub.url}/lfs-upload/{obj['oid']}"}}
            objects.append(answer)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_upload(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, None, f"the uploaded bytes do not have sha256 {oid}")
        self.server.hub.storage.lfs_objects[oid] = self.body
        self._send(200, b"", {})

    def _commit(self, rev: str, **g) -> None:
        repo = self._repo(**g)
        if _flag(self.query.get("create_pr")):
            raise HubError(400, None, "pull requests are not supported by the test hub")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        operations = [(line["key"], line["value"]) for line in lines if line["key"] != "header"]
        commit = self.server.hub.storage.commit(repo, rev, header, operations)
        url = f"{self._repo_url(repo)}/commit/{commit.oid}"
        self._json({"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""})

    # -- download --------------------------------------------------------------------------------------------
    def _resolve(self, rev: str, path: str, **g) -> None:
        commit = self._repo(**g).resolve(rev)
        headers = {"X-Repo-Commit": commit.oid}
        if (blob := commit.files.get(path)) is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}", headers)
        headers |= {"ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if blob.lfs:
            headers |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))}
        data, status = blob.data, 200
        if match := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            first, last = match.groups()
            start = int(first) if first else max(len(data) - int(last or 0), 0)
            end = min(int(last) + 1, len(data)) if first and last else len(data)
            if start >= len(data) or start >= end:
                raise HubError(416, None, "Requested range not satisfiable", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            data, status = data[start:end], 206
        self._send(status, data, headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class HubServer:
    """The loopback Hub: ``with HubServer() as hub: ...`` with ``HF_ENDPOINT=hub.url`` in the clients' env."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.storage = HubStorage()
        self.requests: list[tuple[str, str, str | None, int | str]] = []
        self.unhandled: list[str] = []
        self._faults: dict[str, list[str | int]] = {}
        self._fault_lock = threading.Lock()
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._httpd = _HTTPServer(self._address, _Handler)
        self._httpd.hub = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, route: str, times: int = 1, error: str | int = "reset") -> None:
        """Make the next ``times`` requests to ``route`` (a key of ``ROUTES``) fail: ``error="reset"`` drops the
        connection with a TCP reset, an int answers that HTTP status, ``"truncate"`` (GET only) sends half the
        body and drops the connection. A failed request changes nothing."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {sorted(ROUTES)}")
        with self._fault_lock:
            self._faults.setdefault(route, []).extend([error] * times)

    def _take_fault(self, route: str | None, method: str) -> str | int | None:
        with self._fault_lock:
            pending = self._faults.get(route)
            if not pending or (pending[0] == "truncate" and method != "GET"):
                return None
            return pending.pop(0)

    # -- for assertions in tests -----------------------------------------------------------------------------
    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a branch or commit, ``{path: content}``."""
        with self.storage.lock:
            commit = self.storage.repo(repo_type, repo_id).resolve(revision)
        return {path: blob.data for path, blob in commit.files.items()}

    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """The commit id a branch points at."""
        with self.storage.lock:
            return self.storage.repo(repo_type, repo_id).resolve(revision).oid

    def count(self, route: str) -> int:
        """How many requests to ``route`` were answered (or reset)."""
        return sum(1 for r in self.requests if r[2] == route)
