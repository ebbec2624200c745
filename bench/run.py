"""The diary benchmark, side by side with the original Go service (bench/original/).

Real gunicorn with gunicorn.conf.py, PostgreSQL, moto's S3 server, wrk as the load
generator; the Go service is built from bench/original/ with Debian's Go packages
and runs against its own table in the same database. Seeds with SQL, never through
the API. Prints one side-by-side table (req/s, p50, p99, server CPU per request),
a table of other figures, and the targets with PASS/FAIL. Not part of `make test`:
the figures depend on the machine.

    BENCH_SECONDS   length of each wrk run (default 5)
    BENCH_REPEATS   runs of each scenario, diary and Go alternating; the median
                    by rate is shown (default 3)
    WRK             the wrk binary (default /usr/bin/wrk)

`python -m bench --record-original` also writes the Go service's figures to
bench/original/recorded.json, which later runs show when Go cannot be built.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
import requests
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import go_service  # noqa: E402
from tests.servers import (  # noqa: E402
    flask_cli,
    free_port,
    gunicorn_master_pid,
    gunicorn_server,
    gunicorn_worker_pids,
    listening_workers,
    moto_s3_server,
    postgres_database,
    service_env,
)

USERS = 100
PAGE_USER = 1  # exactly 20 entries, each with a photo
POST_USER = 4  # the text POSTs land here, so they change no measured page
PHOTO_USER = 5
PAGE_ENTRIES = 20
PASSWORD = "bench password"  # noqa: S105  (throwaway accounts in a throwaway database)
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
REPEATS = max(1, int(os.environ.get("BENCH_REPEATS", "3")))
CONNECTION_COUNTS = (8, 32)
WRK = os.environ.get("WRK", "/usr/bin/wrk")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Targets, in CPU milliseconds of the server's processes per request.
POST_TEXT_CPU_MS = 2.0
TIMELINE_CPU_MS = 2.0


def token_for(user_number: int) -> str:
    return f"bench-token-{user_number:03d}-0123456789abcdef"


def bearer(user_number: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user_number)}"}


# --- seeding --------------------------------------------------------------------


def seed_users(url: str) -> None:
    """100 users with one token each."""
    from werkzeug.security import generate_password_hash

    password_hash = generate_password_hash(PASSWORD)
    with psycopg.connect(url, autocommit=True) as db:
        for number in range(1, USERS + 1):
            db.execute(
                "INSERT INTO users (id, email, password_hash, display_name, created_at)"
                " VALUES (%s, %s, %s, '', now())",
                (number, f"user{number}@bench.example", password_hash),
            )
            db.execute(
                "INSERT INTO api_tokens (user_id, name, token_hash, created_at)"
                " VALUES (%s, 'bench', %s, now())",
                (number, hashlib.sha256(token_for(number).encode()).hexdigest()),
            )
        db.execute("SELECT setval(pg_get_serial_sequence('users','id'), 1000)")


def seed_entries(url: str, total: int) -> None:
    """`total` entries: one in 50 to user 1 (20 of 1,000), the rest spread over users 2-100.

    Each of user 1's entries carries a photo row, so its pages of 20 carry 20 photos
    (the presigning and the image query are part of what is measured).
    """
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO entries (user_id, text, created_at, updated_at)"
            " SELECT CASE WHEN n %% 50 = 0 THEN 1 ELSE (n %% 99) + 2 END,"
            " 'Bench entry ' || n || ' walked by the river and ate ramen',"
            " now() - make_interval(secs => %(total)s - n),"
            " now() - make_interval(secs => %(total)s - n)"
            " FROM generate_series(0, %(total)s - 1) AS n",
            {"total": total},
        )
        db.execute(
            "INSERT INTO images (entry_id, storage_key, content_type, byte_size, width, height,"
            " original_filename, position, created_at)"
            " SELECT e.id, 'users/1/bench-' || e.id || '.jpg', 'image/jpeg', 3000000, 4000, 3000,"
            " 'IMG.jpg', 0, now() FROM entries e WHERE e.user_id = 1"
        )
        # VACUUM too: otherwise autovacuum, woken by the inserts, runs on the fresh
        # tables during the measurement.
        db.execute("VACUUM (ANALYZE) entries, images, users")


def seed_original(url: str) -> int:
    """The Go service's table holds user 1's 20 entries: the same ids, times, texts, photo keys."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("TRUNCATE original_entries")
        db.execute(
            "INSERT INTO original_entries (id, created_at, updated_at, deleted_at, text, img)"
            " SELECT e.id, e.created_at, e.updated_at, NULL, e.text,"
            " coalesce((SELECT i.storage_key FROM images i WHERE i.entry_id = e.id"
            " ORDER BY i.position LIMIT 1), '')"
            " FROM entries e WHERE e.user_id = %s AND e.deleted_at IS NULL ORDER BY e.id",
            (PAGE_USER,),
        )
        db.execute(
            "SELECT setval(pg_get_serial_sequence('original_entries', 'id'),"
            " (SELECT max(id) FROM entries))"
        )
        db.execute("VACUUM (ANALYZE) original_entries")
        return db.execute("SELECT count(*) FROM original_entries").fetchone()[0]


def seed_big_user(url: str, user_id: int, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO entries (user_id, text, created_at, updated_at)"
            " SELECT %s, repeat('Stream me ', 20) || n, now() - make_interval(secs => n),"
            " now() - make_interval(secs => n) FROM generate_series(1, %s) AS n",
            (user_id, count),
        )
        db.execute("ANALYZE")


# --- processes: CPU and memory from /proc ---------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split among the processes sharing them.

    The workers fork from a preloaded master, so most of their pages are shared;
    summing RSS counts those pages three times, summing PSS counts them once.
    """
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, PermissionError):
        pass
    return 0.0


def wait_until_idle(pids: Callable[[], list[int]], timeout: float = 30.0) -> None:
    """Until the processes' CPU time stops growing: uploads still being decoded after wrk
    stopped would otherwise count in the next measurement (+25-30 MB seen)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pids())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pids())
        if now - last <= 1 / CLOCK_TICKS:
            return
        last = now


class MemorySampler:
    """Samples RSS and PSS every 20 ms: each worker's growth over its baseline, and
    the peak of the service's total (the master, if any, and its workers)."""

    def __init__(self, master: int, workers: Callable[[], list[int]]) -> None:
        self.master = master
        self.workers = workers
        self.baseline = {pid: rss_mb(pid) for pid in workers()}
        self.peak = dict(self.baseline)
        self.total_peak = 0.0
        self.total_pss_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            workers = self.workers()
            total = rss_mb(self.master) if self.master not in workers else 0.0
            for pid in workers:
                value = rss_mb(pid)
                total += value
                self.peak[pid] = max(self.peak.get(pid, 0.0), value)
            self.total_peak = max(self.total_peak, total)
            pss = sum(pss_mb(pid) for pid in {self.master, *workers})
            self.total_pss_peak = max(self.total_pss_peak, pss)
            time.sleep(0.02)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return max(self.peak[p] - self.baseline.get(p, self.peak[p]) for p in self.peak)


# --- load -----------------------------------------------------------------------

# Every run counts the requests wrk sent: those still in flight at the deadline are
# served to the end all the same, so their CPU is spent; dividing by the requests
# sent, not those answered, keeps a slow server's figure honest (at 18 req/s and 32
# connections the difference was a third).
LUA_COUNT = """
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  sent = 0
end
function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, next_body and next_body() or nil)
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  io.write(string.format("requests sent: %d\\n", total))
end
"""
LUA_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
local f = io.open("{path}", "rb")
local body = f:read("*all")
f:close()
wrk.body = body
"""
# moto's server fails (HTTP 500) on concurrent PUTs of one key, which the Go service
# makes when every upload is named IMG_0001.jpg: each request names its file anew.
LUA_UNIQUE_FILENAME = """
local at = body:find("IMG_0001.jpg", 1, true)
local head, tail = body:sub(1, at - 1), body:sub(at + 12)
local count = 0
function next_body()
  count = count + 1
  return head .. "IMG_" .. id .. "_" .. count .. ".jpg" .. tail
end
"""
BOUNDARY = "benchboundary7MA4YWxkTrZu0gW"


def multipart_body(text: str, photo: bytes | None) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode()
    ]
    if photo is not None:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="IMG_0001.jpg"'
            "\r\nContent-Type: image/jpeg\r\n\r\n".encode()
            + photo
            + b"\r\n"
        )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def wrk_script(directory: Path, body: bytes | None, unique_filenames: bool = False) -> Path:
    """A wrk script counting the requests it sends; POSTing `body` (multipart) if given."""
    lua = ""
    if body is not None:
        body_path = directory / f"body-{hashlib.sha256(body).hexdigest()[:16]}.bin"
        body_path.write_bytes(body)
        lua = LUA_POST.format(boundary=BOUNDARY, path=body_path)
        if unique_filenames:
            lua += LUA_UNIQUE_FILENAME
    script = directory / f"script-{hashlib.sha256((lua + LUA_COUNT).encode()).hexdigest()[:16]}.lua"
    script.write_text(lua + LUA_COUNT)
    return script


def wrk(
    url: str, headers: dict[str, str], connections: int, script: Path | None = None
) -> dict[str, float]:
    """Run wrk; requests/s, p50 and p99 in ms, requests completed, non-2xx/3xx answers."""
    command = [WRK, "-t2", f"-c{connections}", f"-d{DURATION}s", "--latency", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    completed = re.search(r"(\d+) requests in", out)
    if rate is None or completed is None:
        raise RuntimeError(f"wrk printed no rate for {url}:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sent = re.search(r"requests sent: (\d+)", out)
    return {
        "rps": float(rate.group(1)),
        "p50": ms("50"),
        "p99": ms("99"),
        "requests": float(completed.group(1)),
        "sent": float(sent.group(1)) if sent else float(completed.group(1)),
        "bad": float(bad.group(1)) if bad else 0.0,
    }


@dataclass
class Target:
    """One server under load: its base URL and the processes whose CPU it spends."""

    base: str
    pids: Callable[[], list[int]]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    script: Path  # from wrk_script
    body: bytes | None = None  # multipart, POSTed


def measure(target: Target, request: Request, connections: int) -> dict[str, float]:
    """One wrk run, with the server's CPU milliseconds per request sent."""
    pids = target.pids()
    before = cpu_seconds(pids)
    result = wrk(target.base + request.path, request.headers, connections, request.script)
    # Requests still in flight at wrk's deadline are served to the end: wait for
    # them, so their CPU is counted along with them (LUA_COUNT).
    wait_until_idle(lambda: pids, timeout=30)
    spent = cpu_seconds(pids) - before
    result["cpu_ms"] = spent * 1000 / result["sent"] if result["sent"] else float("nan")
    return result


def check(target: Target, request: Request, content_type: str, items: int | None = None) -> None:
    """One request by hand first: a wrong setup must fail here, not hide in wrk's counts.

    No redirects followed: a lost session would otherwise land on the sign-in page
    and pass for a timeline.
    """
    if request.body is not None:
        headers = {
            **request.headers,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        }
        answer = requests.post(
            target.base + request.path,
            data=request.body,
            headers=headers,
            timeout=30,
            allow_redirects=False,
        )
    else:
        answer = requests.get(
            target.base + request.path, headers=request.headers, timeout=30, allow_redirects=False
        )
    problem = None
    if answer.status_code != 200:
        problem = f"HTTP {answer.status_code}"
    elif not answer.headers.get("Content-Type", "").startswith(content_type):
        problem = f"Content-Type {answer.headers.get('Content-Type')}, not {content_type}"
    elif items is not None and len(answer.json()) != items:
        problem = f"{len(answer.json())} items, not {items}"
    if problem:
        raise RuntimeError(f"{request.path} on {target.base}: {problem}: {answer.text[:300]}")


def same_answer(one: Target, other: Target, request: Request) -> bool:
    """Whether both servers answer the GET `request` with the same JSON."""
    answers = [
        requests.get(target.base + request.path, headers=request.headers, timeout=30).json()
        for target in (one, other)
    ]
    return answers[0] == answers[1]


def median_by_rate(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


# --- photos ---------------------------------------------------------------------


def jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """A photo-like JPEG: random noise compresses like a real scene at high detail."""
    image = PILImage.effect_noise((width, height), 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_of_size(target: int, limit: int) -> bytes:
    """A JPEG close to `target` bytes and below `limit`."""
    side = 1000
    while True:
        data = jpeg(side, side * 3 // 4, quality=95)
        if len(data) >= target:
            break
        side = int(side * (target / len(data)) ** 0.5 * 1.05) + 1
    while len(data) >= limit:
        side = int(side * 0.95)
        data = jpeg(side, side * 3 // 4, quality=95)
    return data


def image_sizes_cpu() -> float:
    """CPU seconds for diary.images.make_sizes to make a 12-megapixel JPEG into all its sizes."""
    from diary import images

    photo = jpeg(4000, 3000, quality=92)
    started = time.process_time()
    made = images.make_sizes(io.BytesIO(photo), "file")
    elapsed = time.process_time() - started
    for variant in made:
        variant.stream.close()
    return elapsed


# --- servers --------------------------------------------------------------------


@contextmanager
def service() -> Iterator[dict]:
    with moto_s3_server() as s3, postgres_database() as database_url:
        bucket = "diary-bench"
        client = boto3.client(
            "s3",
            endpoint_url=s3,
            region_name="ap-northeast-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106  (moto)
        )
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
        )
        env = service_env(
            database_url,
            s3,
            bucket,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106  (moto)
            # As the Dockerfile sets it, so memory is measured as deployed.
            MALLOC_ARENA_MAX="2",
            # Plain HTTP on loopback (no TLS proxy): the timeline's session cookie must come back.
            SESSION_COOKIE_SECURE="false",
        )
        flask_cli(env, "db", "upgrade")
        yield {"env": env, "db": database_url, "s3": s3, "bucket": bucket}


def wait_for_health(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code < 500:
                return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def session_cookie(base: str) -> str:
    with requests.Session() as browser:
        page = browser.get(f"{base}/login", timeout=10).text
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
            r'value="([^"]+)"[^>]*name="csrf_token"', page
        )
        browser.post(
            f"{base}/login",
            data={
                "csrf_token": match.group(1) if match else "",
                "email": f"user{PAGE_USER}@bench.example",
                "password": PASSWORD,
            },
            timeout=10,
        )
        return "; ".join(f"{c.name}={c.value}" for c in browser.cookies)


@contextmanager
def original_service(svc: dict, directory: Path) -> Iterator[tuple[Target | None, str]]:
    """The Go service built and running, or None and why not."""
    try:
        binary = go_service.build(directory)
        env = {
            "BUCKET": svc["bucket"],
            "S3_ENDPOINT_URL": svc["s3"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # (moto)
            "AWS_REGION": "ap-northeast-1",
        }
        port = free_port()
        with go_service.running(binary, svc["db"], env, port) as pid:
            yield Target(f"http://127.0.0.1:{port}", lambda: [pid]), ""
    except go_service.BuildFailed as error:
        yield None, str(error)


# --- the run --------------------------------------------------------------------

SCENARIOS = {
    "get": "GET / original contract, 20 entries",
    "post_text": "POST / text only (multipart)",
    "timeline": "HTML timeline, 20 entries (session)",
    "api_page": "GET /api/v1/entries?limit=20",
}
PHOTO_SCENARIO = "POST / 3 MB photo (8 connections)"
# The scenarios bench/ceiling.py also serves: the least a Flask app spends on them here.
CEILING_SCENARIOS = ("get", "post_text")


def machine() -> str:
    model = ""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return f"{os.cpu_count()} cores ({model or platform.processor()})"


def fmt(result: dict[str, float] | None) -> str:
    if result is None:
        return f"{'-':>9} {'-':>8} {'-':>8} {'-':>8}"
    bad = f" ({int(result['bad'])} non-2xx)" if result.get("bad") else ""
    return (
        f"{result['rps']:9.1f} {result['p50']:8.2f} {result['p99']:8.2f}"
        f" {result['cpu_ms']:8.2f}{bad}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--record-original",
        action="store_true",
        help="write the Go service's figures to bench/original/recorded.json",
    )
    options = parser.parse_args(argv)

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    diary: dict[tuple[str, int], dict[str, float]] = {}
    original: dict[tuple[str, int], dict[str, float]] = {}
    ceiling: dict[tuple[str, int], dict[str, float]] = {}
    figures: list[tuple[str, str]] = []

    with (
        service() as svc,
        tempfile.TemporaryDirectory() as tmp,
        original_service(svc, Path(tmp)) as (go, go_missing),
    ):
        seed_users(svc["db"])
        seed_entries(svc["db"], 1000)
        if go is not None:
            rows = seed_original(svc["db"])
            if rows != PAGE_ENTRIES:
                raise RuntimeError(f"the Go service's table holds {rows} rows, not {PAGE_ENTRIES}")

        started = time.monotonic()
        with (
            gunicorn_server(svc["env"]) as base,
            gunicorn_server(svc["env"], app="bench.ceiling:app") as ceiling_base,
        ):
            wait_for_health(base)
            figures.append(("diary: start to first answer", f"{time.monotonic() - started:.2f} s"))
            port = int(base.rsplit(":", 1)[1])
            master = gunicorn_master_pid(port)
            # Both workers up, not only the one that answered first.
            processes = [master, *listening_workers(port, expected=2)]
            figures.append(
                (
                    "diary: memory idle (master + 2 workers)",
                    f"PSS {sum(pss_mb(p) for p in processes):.0f} MB,"
                    f" sum of RSS {sum(rss_mb(p) for p in processes):.0f} MB",
                )
            )
            if go is not None:
                go_pid = go.pids()[0]
                figures.append(("original Go: memory idle", f"RSS {rss_mb(go_pid):.0f} MB"))

            diary_target = Target(base, lambda: [master, *gunicorn_worker_pids(master)])
            cookie = session_cookie(base)
            text_body = multipart_body("A text-only entry", None)
            get_script = wrk_script(Path(tmp), None)
            text_script = wrk_script(Path(tmp), text_body)
            diary_requests = {
                "get": Request("/", bearer(PAGE_USER), get_script),
                "timeline": Request("/", {"Cookie": cookie, "Accept": "text/html"}, get_script),
                "api_page": Request("/api/v1/entries?limit=20", bearer(PAGE_USER), get_script),
                "post_text": Request("/", bearer(POST_USER), text_script, text_body),
            }
            original_requests = {
                "get": Request("/", {}, get_script),
                "post_text": Request("/", {}, text_script, text_body),
            }
            ceiling_master = gunicorn_master_pid(int(ceiling_base.rsplit(":", 1)[1]))
            ceiling_target = Target(
                ceiling_base, lambda: [ceiling_master, *gunicorn_worker_pids(ceiling_master)]
            )
            # The yardstick answers exactly what diary answers, or it measures nothing.
            if not same_answer(diary_target, ceiling_target, diary_requests["get"]):
                raise RuntimeError("bench/ceiling.py's GET / differs from diary's")
            check(diary_target, diary_requests["get"], "application/json", PAGE_ENTRIES)
            check(diary_target, diary_requests["timeline"], "text/html")
            check(diary_target, diary_requests["api_page"], "application/json")
            if go is not None:
                check(go, original_requests["get"], "application/json", PAGE_ENTRIES)

            # Reads first, writes last: the Go service's GET / lists its whole table,
            # so its POSTs must come after its GETs. Within a scenario diary and Go
            # alternate, so a burst of noise on the shared machine hits both alike.
            with MemorySampler(master, lambda: gunicorn_worker_pids(master)) as sampler:
                for name in ("get", "timeline", "api_page", "post_text"):
                    for connections in CONNECTION_COUNTS:
                        diary_runs, original_runs, ceiling_runs = [], [], []
                        for _ in range(REPEATS):
                            diary_runs.append(
                                measure(diary_target, diary_requests[name], connections)
                            )
                            if go is not None and name in original_requests:
                                original_runs.append(
                                    measure(go, original_requests[name], connections)
                                )
                            if name in CEILING_SCENARIOS:
                                ceiling_runs.append(
                                    measure(ceiling_target, diary_requests[name], connections)
                                )
                        diary[name, connections] = median_by_rate(diary_runs)
                        if original_runs:
                            original[name, connections] = median_by_rate(original_runs)
                        if ceiling_runs:
                            ceiling[name, connections] = median_by_rate(ceiling_runs)
                        print(
                            f"  {SCENARIOS[name]:<40} {connections:>2} conns:"
                            f" diary {diary[name, connections]['rps']:.0f} req/s"
                            + (
                                f", Go {original[name, connections]['rps']:.0f} req/s"
                                if (name, connections) in original
                                else ""
                            ),
                            file=sys.stderr,
                            flush=True,
                        )

            photo = jpeg_of_size(3_000_000, 3_300_000)
            photo_script = wrk_script(
                Path(tmp), multipart_body("With a photo", photo), unique_filenames=True
            )
            wait_until_idle(diary_target.pids)
            with MemorySampler(master, lambda: gunicorn_worker_pids(master)) as load_sampler:
                diary["photo", 8] = measure(
                    diary_target, Request("/", bearer(PHOTO_USER), photo_script), 8
                )
            if go is not None:
                go_memory = MemorySampler(go_pid, lambda: [go_pid])
                with go_memory:
                    original["photo", 8] = measure(go, Request("/", {}, photo_script), 8)
                figures.append(
                    ("original Go: memory peak under load", f"RSS {go_memory.total_peak:.0f} MB")
                )
            service_rss = max(load_sampler.total_peak, sampler.total_peak)
            service_pss = max(load_sampler.total_pss_peak, sampler.total_pss_peak)
            figures.append(
                (
                    "diary: memory peak under load",
                    f"PSS {service_pss:.0f} MB (sum of RSS {service_rss:.0f} MB)",
                )
            )

            # Streaming GET / of a user with 50,000 entries: one request, workers sampled.
            seed_big_user(svc["db"], 50, 50_000)
            wait_until_idle(diary_target.pids)
            with MemorySampler(master, lambda: gunicorn_worker_pids(master)) as stream_sampler:
                started_stream = time.monotonic()
                with requests.get(
                    base + "/", headers=bearer(50), stream=True, timeout=120
                ) as response:
                    size = sum(len(chunk) for chunk in response.iter_content(65536))
                stream_seconds = time.monotonic() - started_stream
            figures.append(
                (
                    "diary: GET / of 50,000 entries",
                    f"{size / 1e6:.1f} MB in {stream_seconds:.2f} s,"
                    f" worker +{stream_sampler.growth:.1f} MB",
                )
            )

            limit = int(os.environ.get("MAX_UPLOAD_MB", "20")) * 1024 * 1024
            big = jpeg_of_size(limit - 2_000_000, limit - 100_000)
            wait_until_idle(diary_target.pids)
            with MemorySampler(master, lambda: gunicorn_worker_pids(master)) as upload_sampler:
                answer = requests.post(
                    base + "/api/v1/entries",
                    headers=bearer(6),
                    data={"text": "big"},
                    files={"file": ("big.jpg", big, "image/jpeg")},
                    timeout=120,
                )
            figures.append(
                (
                    "diary: max-size upload",
                    f"{len(big) / 1e6:.1f} MB -> HTTP {answer.status_code},"
                    f" worker +{upload_sampler.growth:.1f} MB",
                )
            )

        # The API page with 1,000 and with 1,000,000 entries: a second database, both
        # servers fresh and loaded in turn, so machine noise hits both sides alike.
        with postgres_database() as big_db:
            big_env = {**svc["env"], "DATABASE_URL": big_db}
            flask_cli(big_env, "db", "upgrade")
            seed_users(big_db)
            seeded = time.monotonic()
            seed_entries(big_db, 1_000_000)
            figures.append(("seed 1,000,000 entries (SQL)", f"{time.monotonic() - seeded:.1f} s"))
            with gunicorn_server(svc["env"]) as small, gunicorn_server(big_env) as big_base:
                wait_for_health(small)
                wait_for_health(big_base)
                page = "/api/v1/entries?limit=20"
                small_runs, big_runs = [], []
                for _ in range(3):
                    small_runs.append(wrk(small + page, bearer(PAGE_USER), 32))
                    big_runs.append(wrk(big_base + page, bearer(PAGE_USER), 32))
            small_runs.sort(key=lambda run: run["p50"])
            big_runs.sort(key=lambda run: run["p50"])
            page_1k, page_1m = small_runs[1], big_runs[1]
            figures.append(
                (
                    "diary: API page, 1k vs 1M entries (32 conns, median of 3)",
                    f"p50 {page_1k['p50']:.2f} ms vs {page_1m['p50']:.2f} ms"
                    f" ({page_1k['rps']:.0f} vs {page_1m['rps']:.0f} req/s)",
                )
            )

    cpu = image_sizes_cpu()
    figures.append(("diary: 12 MP JPEG -> all sizes (CPU)", f"{cpu:.3f} s"))

    # The Go column: this run's, or the recorded one when Go could not be built here.
    recorded_note = ""
    if go is None:
        try:
            recorded = go_service.load_recorded()
        except (FileNotFoundError, ValueError) as error:
            recorded, recorded_note = None, f"and no recorded figures ({error})"
        if recorded is not None:
            for key, value in recorded["figures"].items():
                name, connections = key.rsplit("@", 1)
                original[name, int(connections)] = value
            recorded_note = (
                f"showing figures recorded {recorded['recorded']} on {recorded['machine']}"
                f" ({recorded['seconds']} s runs)"
            )
    elif options.record_original:
        go_service.save_recorded(
            {
                "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "seconds": DURATION,
                "repeats": REPEATS,
                "figures": {f"{name}@{conns}": value for (name, conns), value in original.items()},
            }
        )

    print(
        f"\ndiary vs the original Go service ({machine()}; wrk -t2, {DURATION} s per run,"
        f" median of {REPEATS} by rate)"
    )
    print(
        "  no CPU pinning: each server may use both cores (gunicorn 2 workers x 4 threads,"
        " Go GOMAXPROCS=2); one is loaded at a time; wrk, PostgreSQL and moto share the cores."
    )
    print(
        "  CPU ms/req: utime+stime of the server's processes over the run (until idle)"
        " / requests wrk sent."
    )
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"  load average (1/5/15 min) before the run {' '.join(load_before)},"
        f" after {' '.join(load_after)}: other work on the machine shifts every figure."
    )
    if go is None:
        print(f"  The Go service was not run: {go_missing}; {recorded_note}.")
    head = f"{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>8}"
    go_label = "original Go" if go is not None else "original Go (recorded)"
    print(f"\n  {'':<40} {'':>5}   {'diary':^{len(head)}}   {go_label:^{len(head)}}")
    print(f"  {'scenario':<40} {'conns':>5}   {head}   {head}")
    for name, label in [*SCENARIOS.items(), ("photo", PHOTO_SCENARIO)]:
        for connections in CONNECTION_COUNTS:
            if (name, connections) not in diary:
                continue
            print(
                f"  {label:<40} {connections:>5}   {fmt(diary[name, connections])}"
                f"   {fmt(original.get((name, connections)))}"
            )
    print(
        "\n  the least a Flask app spends here (bench/ceiling.py: the same statements and JSON,"
        "\n  no extensions, hooks or SQLAlchemy, under the same gunicorn.conf.py; a yardstick)"
    )
    print(f"  {'scenario':<40} {'conns':>5}   {head}")
    for name in CEILING_SCENARIOS:
        for connections in CONNECTION_COUNTS:
            print(f"  {SCENARIOS[name]:<40} {connections:>5}   {fmt(ceiling[name, connections])}")

    print("\nother figures")
    width = max(len(name) for name, _ in figures)
    for name, value in figures:
        print(f"  {name:<{width}}  {value}")

    targets: list[tuple[str, bool, str]] = []
    post_cpu = max(diary["post_text", c]["cpu_ms"] for c in CONNECTION_COUNTS)
    targets.append(
        (
            f"POST / text < {POST_TEXT_CPU_MS:g} ms CPU per request",
            post_cpu < POST_TEXT_CPU_MS,
            " / ".join(f"{diary['post_text', c]['cpu_ms']:.2f}" for c in CONNECTION_COUNTS)
            + " ms (8 / 32 conns; the least Flask app "
            + " / ".join(f"{ceiling['post_text', c]['cpu_ms']:.2f}" for c in CONNECTION_COUNTS)
            + " ms)",
        )
    )
    timeline_cpu = max(diary["timeline", c]["cpu_ms"] for c in CONNECTION_COUNTS)
    targets.append(
        (
            f"HTML timeline < {TIMELINE_CPU_MS:g} ms CPU per request",
            timeline_cpu < TIMELINE_CPU_MS,
            " / ".join(f"{diary['timeline', c]['cpu_ms']:.2f}" for c in CONNECTION_COUNTS)
            + " ms (8 / 32 conns)",
        )
    )
    go_get = original.get(("get", 32))
    diary_get = diary["get", 32]["rps"]
    least_flask_get = ceiling["get", 32]["rps"]
    targets.append(
        (
            "GET / 20 entries, 32 conns: rate >= the Go service's",
            go_get is not None and diary_get >= go_get["rps"],
            f"{diary_get:.0f} vs {go_get['rps']:.0f} req/s ({diary_get / go_get['rps']:.2f}x;"
            f" the least Flask app {least_flask_get:.0f} req/s,"
            f" {least_flask_get / go_get['rps']:.2f}x)"
            if go_get is not None
            else "no Go figure",
        )
    )
    targets.append(
        (
            "GET / 50k entries: worker grows < 20 MB",
            stream_sampler.growth < 20,
            f"+{stream_sampler.growth:.1f} MB",
        )
    )
    targets.append(
        (
            "max-size upload: worker grows < 150 MB",
            upload_sampler.growth < 150 and answer.status_code < 500,
            f"+{upload_sampler.growth:.1f} MB (HTTP {answer.status_code})",
        )
    )
    targets.append(
        (
            "service memory (PSS) at 2 workers under load < 400 MB",
            service_pss < 400,
            f"{service_pss:.0f} MB",
        )
    )
    targets.append(
        (
            "API page with 1M entries: p50 within 1.2x of 1k",
            page_1m["p50"] <= 1.2 * page_1k["p50"],
            f"{page_1m['p50'] / page_1k['p50']:.2f}x",
        )
    )
    targets.append(("12 MP JPEG into all sizes < 0.3 s CPU", cpu < 0.3, f"{cpu:.3f} s"))
    refused = {
        f"{side} {name}@{conns}": int(result["bad"])
        for side, results in (("diary", diary), ("Go", original if go is not None else {}))
        for (name, conns), result in results.items()
        if result.get("bad")
    }
    targets.append(
        (
            "every measured request answered 2xx/3xx",
            not refused,
            ", ".join(f"{key}: {count} non-2xx" for key, count in refused.items()) or "yes",
        )
    )

    print("\ntargets")
    for name, ok, figure in targets:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<55} {figure}")
    print("  (SQL statements per request constant: asserted in tests, `pytest -k statements`)")
    return 0 if all(ok for _, ok, _ in targets) else 1
