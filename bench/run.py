"""The diary benchmark: real gunicorn, PostgreSQL, moto S3, wrk as the load generator.

Seeds with SQL (generate_series), never through the API, so 1,000,000 rows take
seconds. Prints one table of figures and one of targets with PASS/FAIL.
Not part of `make test`: figures depend on the machine; the targets are ratios
measured in one run, so they compare like with like.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg
import requests
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import (  # noqa: E402
    flask_cli,
    gunicorn_master_pid,
    gunicorn_server,
    gunicorn_worker_pids,
    listening_workers,
    moto_s3_server,
    postgres_database,
    service_env,
)

USERS = 100
PASSWORD = "bench password"  # noqa: S105  (throwaway accounts in a throwaway database)
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = 32
WRK = os.environ.get("WRK", "/usr/bin/wrk")


def token_for(user_number: int) -> str:
    return f"bench-token-{user_number:03d}-0123456789abcdef"


def seed_users(url: str) -> None:
    """100 users with one token each; user 1's newest entries carry a photo each."""
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


def seed_entries(url: str, total: int, start: int = 0) -> None:
    """Entries numbered start..total-1 spread over the 100 users, a tenth to user 1.

    User 1 must fill a page of 20 even with 1,000 entries in all.

    User 1 gets a photo on each of its entries, so its API page of 20 carries 20
    photos (the presigning and the image query are part of what is measured).
    """
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO entries (user_id, text, created_at, updated_at)"
            " SELECT CASE WHEN n %% 10 = 0 THEN 1 ELSE (n %% 100) + 1 END,"
            " 'Bench entry ' || n || ' walked by the river and ate ramen',"
            " now() - make_interval(secs => %(total)s - n),"
            " now() - make_interval(secs => %(total)s - n)"
            " FROM generate_series(%(start)s, %(total)s - 1) AS n",
            {"start": start, "total": total},
        )
        db.execute(
            "INSERT INTO images (entry_id, storage_key, content_type, byte_size, width, height,"
            " original_filename, position, created_at)"
            " SELECT e.id, 'users/1/bench-' || e.id || '.jpg', 'image/jpeg', 3000000, 4000, 3000,"
            " 'IMG.jpg', 0, now() FROM entries e"
            " WHERE e.user_id = 1 AND NOT EXISTS (SELECT 1 FROM images i WHERE i.entry_id = e.id)"
        )
        # VACUUM too: otherwise autovacuum, woken by the inserts, runs on the fresh
        # table during the measurement and slows one side of the 1k/1M pair.
        db.execute("VACUUM (ANALYZE) entries, images, users")


def seed_big_user(url: str, user_id: int, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO entries (user_id, text, created_at, updated_at)"
            " SELECT %s, repeat('Stream me ', 20) || n, now() - make_interval(secs => n),"
            " now() - make_interval(secs => n) FROM generate_series(1, %s) AS n",
            (user_id, count),
        )
        db.execute("ANALYZE")


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


def wait_until_idle(master: int, timeout: float = 30.0) -> None:
    """Until the workers' CPU time stops growing: uploads still being decoded after wrk
    stopped would otherwise count in the next memory measurement (+25-30 MB seen)."""

    def cpu_ticks() -> int:
        total = 0
        for pid in gunicorn_worker_pids(master):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total

    deadline = time.monotonic() + timeout
    last = cpu_ticks()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_ticks()
        if now - last <= 1:
            return
        last = now


class MemorySampler:
    """Samples each worker's RSS every 20 ms; reports the largest growth over the baseline."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.baseline = {pid: rss_mb(pid) for pid in gunicorn_worker_pids(master)}
        self.peak = dict(self.baseline)
        self.total_peak = 0.0
        self.total_pss_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = rss_mb(self.master)
            for pid in gunicorn_worker_pids(self.master):
                value = rss_mb(pid)
                total += value
                self.peak[pid] = max(self.peak.get(pid, 0.0), value)
            self.total_peak = max(self.total_peak, total)
            pss = sum(pss_mb(pid) for pid in [self.master, *gunicorn_worker_pids(self.master)])
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


LUA_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
local f = io.open("{path}", "rb")
wrk.body = f:read("*all")
f:close()
"""


def multipart_file(directory: Path, text: str, photo: bytes | None) -> Path:
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode()
    ]
    if photo is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="IMG_0001.jpg"'
            "\r\nContent-Type: image/jpeg\r\n\r\n".encode()
            + photo
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    body = directory / f"body-{len(parts)}-{len(photo or b'')}.bin"
    body.write_bytes(b"".join(parts))
    script = directory / f"{body.stem}.lua"
    script.write_text(LUA_POST.format(boundary=boundary, path=body))
    return script


def wrk(
    url: str, headers: dict[str, str], connections: int = CONNECTIONS, script: Path | None = None
) -> dict[str, float]:
    """Run wrk; requests/s, p50 and p99 in ms, and the count of non-2xx/3xx answers."""
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

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rate,
        "p50": ms("50"),
        "p99": ms("99"),
        "bad": float(bad.group(1)) if bad else 0.0,
        "socket_errors": errors.group(1) if errors else "",
    }


def median_rate(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def jpeg(width: int, height: int, quality: int = 90, noise: bool = True) -> bytes:
    """A photo-like JPEG: random noise compresses like a real scene at high detail."""
    if noise:
        image = PILImage.effect_noise((width, height), 60).convert("RGB")
    else:
        image = PILImage.new("RGB", (width, height), (120, 160, 200))
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
        yield {"env": env, "db": database_url, "s3": s3}


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
                "email": "user1@bench.example",
                "password": PASSWORD,
            },
            timeout=10,
        )
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        check = requests.get(
            f"{base}/",
            headers={"Cookie": cookie, "Accept": "text/html"},
            allow_redirects=False,
            timeout=10,
        )
        if check.status_code != 200:
            raise RuntimeError(f"signing in for the timeline failed: HTTP {check.status_code}")
        return cookie


def main() -> int:
    rows: list[tuple[str, str]] = []
    targets: list[tuple[str, bool, str]] = []

    def row(name: str, result: dict[str, float]) -> None:
        note = f"  non-2xx {int(result['bad'])}" if result["bad"] else ""
        rows.append(
            (
                name,
                f"{result['rps']:9.1f} req/s  p50 {result['p50']:7.1f} ms"
                f"  p99 {result['p99']:7.1f} ms{note}",
            )
        )

    with service() as svc, tempfile.TemporaryDirectory() as tmp:
        seed_users(svc["db"])
        seed_entries(svc["db"], 1000)
        auth = {"Authorization": f"Bearer {token_for(1)}"}
        started = time.monotonic()
        with gunicorn_server(svc["env"]) as base:
            while True:
                try:
                    if requests.get(f"{base}/healthz", timeout=1).status_code < 500:
                        break
                except requests.RequestException:
                    time.sleep(0.01)
            rows.append(
                (
                    "start to first answer",
                    f"{time.monotonic() - started:.2f} s (port open + /healthz)",
                )
            )
            port = int(base.rsplit(":", 1)[1])
            master = gunicorn_master_pid(port)
            # Both workers up, not only the one that answered first.
            processes = [master, *listening_workers(port, expected=2)]
            rows.append(
                (
                    "memory idle (master + 2 workers)",
                    f"sum of RSS {sum(rss_mb(p) for p in processes):.0f} MB,"
                    f" PSS {sum(pss_mb(p) for p in processes):.0f} MB",
                )
            )

            # Three alternating runs of each, the median kept: with reuse_port
            # (gunicorn.conf.py) the kernel splits wrk's connections between the
            # workers by a hash, so an uneven split still sways a single run.
            floor_path = "/healthz"
            floors, pages = [], []
            with MemorySampler(master) as sampler:
                for _ in range(3):
                    floors.append(wrk(base + floor_path, {}))
                    pages.append(wrk(base + "/api/v1/entries?limit=20", auth))
            floor, page_1k = median_rate(floors), median_rate(pages)
            row(f"floor GET {floor_path} (median of 3)", floor)
            row("GET /api/v1/entries (20, photos) 1k, page + token caches (median of 3)", page_1k)
            cookie = session_cookie(base)
            row(
                "HTML timeline (session)",
                wrk(base + "/", {"Cookie": cookie, "Accept": "text/html"}),
            )
            user3 = {"Authorization": f"Bearer {token_for(3)}", "Accept": "application/json"}
            row("GET / original contract (10 entries)", wrk(base + "/", user3))
            row("search q=ramen", wrk(base + "/api/v1/entries?q=ramen&limit=20", auth))
            row(
                "POST /api/v1/entries text",
                wrk(
                    base + "/api/v1/entries",
                    {"Authorization": f"Bearer {token_for(4)}"},
                    script=multipart_file(Path(tmp), "A text-only entry", None),
                ),
            )
            photo = jpeg_of_size(3_000_000, 3_300_000)
            with MemorySampler(master) as load_sampler:
                row(
                    "POST /api/v1/entries 3 MB photo",
                    wrk(
                        base + "/api/v1/entries",
                        {"Authorization": f"Bearer {token_for(5)}"},
                        connections=8,
                        script=multipart_file(Path(tmp), "With a photo", photo),
                    ),
                )
            service_rss = max(load_sampler.total_peak, sampler.total_peak)
            service_pss = max(load_sampler.total_pss_peak, sampler.total_pss_peak)
            rows.append(
                (
                    "memory peak under load (service)",
                    f"PSS {service_pss:.0f} MB (sum of RSS {service_rss:.0f} MB, shared pages"
                    " counted once per process)",
                )
            )

            # Streaming GET / of a user with 50,000 entries: one request, workers sampled.
            seed_big_user(svc["db"], 50, 50_000)
            wait_until_idle(master)
            with MemorySampler(master) as stream_sampler:
                started_stream = time.monotonic()
                with requests.get(
                    base + "/",
                    headers={
                        "Authorization": f"Bearer {token_for(50)}",
                        "Accept": "application/json",
                    },
                    stream=True,
                    timeout=120,
                ) as response:
                    size = sum(len(chunk) for chunk in response.iter_content(65536))
                stream_seconds = time.monotonic() - started_stream
            rows.append(
                (
                    "GET / 50,000 entries",
                    f"{size / 1e6:.1f} MB in {stream_seconds:.2f} s,"
                    f" worker +{stream_sampler.growth:.1f} MB",
                )
            )

            limit = int(os.environ.get("MAX_UPLOAD_MB", "20")) * 1024 * 1024
            big = jpeg_of_size(limit - 2_000_000, limit - 100_000)
            wait_until_idle(master)
            with MemorySampler(master) as upload_sampler:
                answer = requests.post(
                    base + "/api/v1/entries",
                    headers={"Authorization": f"Bearer {token_for(6)}"},
                    data={"text": "big"},
                    files={"file": ("big.jpg", big, "image/jpeg")},
                    timeout=120,
                )
            rows.append(
                (
                    "max-size upload",
                    f"{len(big) / 1e6:.1f} MB -> HTTP {answer.status_code},"
                    f" worker +{upload_sampler.growth:.1f} MB",
                )
            )

        # Same page with 1,000,000 entries: a second database, both servers fresh and
        # loaded in turn, so machine noise hits both sides alike. The page cache is
        # off on both: this compares the page's two queries (entries, photos), and
        # every request runs them; the token comes from the token cache as usual.
        with postgres_database() as big_db:
            small_env = {**svc["env"], "API_PAGE_CACHE_MB": "0"}
            big_env = {**small_env, "DATABASE_URL": big_db}
            flask_cli(big_env, "db", "upgrade")
            seed_users(big_db)
            seeded = time.monotonic()
            seed_entries(big_db, 1_000_000)
            rows.append(("seed 1,000,000 entries (SQL)", f"{time.monotonic() - seeded:.1f} s"))
            with gunicorn_server(small_env) as small, gunicorn_server(big_env) as big:
                requests.get(small + "/healthz", timeout=10)
                requests.get(big + "/healthz", timeout=10)
                small_runs, big_runs = [], []
                for _ in range(3):
                    small_runs.append(wrk(small + "/api/v1/entries?limit=20", auth))
                    big_runs.append(wrk(big + "/api/v1/entries?limit=20", auth))
            small_runs.sort(key=lambda run: run["p50"])
            big_runs.sort(key=lambda run: run["p50"])
            page_1k_again, page_1m = small_runs[1], big_runs[1]
            row("GET /api/v1/entries 1k, no page cache (median of 3)", page_1k_again)
            row("GET /api/v1/entries 1M, no page cache (median of 3)", page_1m)
            rows.append(
                (
                    "page without cache vs floor",
                    f"{page_1k_again['rps'] / floor['rps']:.2f}x (not a target: every"
                    " request reads the page)",
                )
            )

    cpu = image_sizes_cpu()
    rows.append(("12 MP JPEG -> all sizes (CPU)", f"{cpu:.3f} s (diary.images.make_sizes)"))

    targets.append(
        (
            "API page >= 0.5x floor rate (page + token caches)",
            page_1k["rps"] >= 0.5 * floor["rps"],
            f"{page_1k['rps'] / floor['rps']:.2f}x",
        )
    )
    targets.append(
        (
            "1M-row page p50 within 1.2x of 1k",
            page_1m["p50"] <= 1.2 * page_1k_again["p50"],
            f"{page_1m['p50'] / page_1k_again['p50']:.2f}x",
        )
    )
    targets.append(
        (
            "GET / 50k entries: worker grows < 20 MB",
            stream_sampler.growth < 20,
            f"+{stream_sampler.growth:.1f} MB",
        )
    )
    targets.append(("12 MP into all sizes < 0.3 s CPU", cpu < 0.3, f"{cpu:.3f} s"))
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
            f"{service_pss:.0f} MB (sum of RSS {service_rss:.0f} MB)",
        )
    )

    width = max(len(name) for name, _ in rows)
    print(f"\ndiary benchmark ({DURATION} s per run, {CONNECTIONS} connections, wrk)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("\ntargets")
    for name, ok, figure in targets:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<48} {figure}")
    print("  (SQL statements per request constant: asserted in tests, `pytest -k statements`)")
    return 0 if all(ok for _, ok, _ in targets) else 1
