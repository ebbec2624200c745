"""Where photo bytes live: Amazon S3 (or any S3-compatible server) or a local folder.

Both backends share one small interface so the domain code never knows which
is in use. Keys are always made by the server (see images.new_storage_key).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as S3ConnectionError
from flask import Flask, current_app, url_for

log = logging.getLogger(__name__)

# Keys never change once written, so clients may cache objects for a year.
IMMUTABLE_CACHE_CONTROL = "private, max-age=31536000, immutable"

# Exports stream photos on in pieces of this size.
CHUNK_BYTES = 256 * 1024

# Presigned URLs kept per worker: about 2 MB at the most.
SIGNED_URL_CACHE_SIZE = 5000

VPC_HINT = (
    "if the service runs with VPC egress (App Runner VPC connector, tasks in private "
    "subnets), all traffic goes through the VPC: S3 needs a gateway VPC endpoint on the "
    "subnets' route table, or a NAT gateway"
)


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime
    size: int


class StorageUnavailable(RuntimeError):
    """The photo store could not be reached or refused the request."""


class Storage(Protocol):
    """What the rules and views may ask of photo storage; both backends provide all of it.

    Every failure to reach the store is a StorageUnavailable (a 503 for clients).
    """

    def put(self, key: str, data: IO[bytes], *, content_type: str) -> None:
        """Store `data` under `key`, replacing nothing of anyone else's (keys are fresh)."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Remove the objects; keys that do not exist are no error."""
        ...

    def get(self, key: str) -> bytes:
        """One object whole (photos are bounded by MAX_UPLOAD_MB)."""
        ...

    def chunks(self, key: str, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """One object a piece at a time, for streaming it on (exports)."""
        ...

    def url(self, key: str) -> str:
        """Where a client fetches the object: presigned (S3) or the app's own (local)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file the app serves itself for `key`, or None when clients fetch from S3."""
        ...

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every stored object (`flask storage gc`)."""
        ...

    @property
    def endpoint(self) -> str | None:
        """The URL the store is reached at, for the doctor to trace; None for a local folder."""
        ...

    def check(self, timeout: float) -> None:
        """Raise unless the store answers within `timeout` (readiness, doctor).

        Unlike the calls above, this and probe() raise the backend's own error, so
        the doctor can name the cause.
        """
        ...

    def probe(self, timeout: float) -> str:
        """Write a small object and delete it again (doctor); return where it was written."""
        ...

    def describe(self) -> str:
        """One line for the start-up log; never a credential."""
        ...


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        endpoint_url: str | None,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        url_expires: int,
        failure_cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        # After S3 could not be reached, calls fail at once until this monotonic
        # time instead of each waiting out the timeouts (see _reachable()).
        self.failure_cooldown = failure_cooldown
        self._clock = clock
        self._failing_until = 0.0
        self._failing_lock = threading.Lock()
        self.endpoint_url = endpoint_url
        # Short-timeout clients for health checks, by timeout (see check()).
        self._probe_clients: dict[float, Any] = {}
        self.url_expires = url_expires
        # key -> (presigned URL, monotonic time it expires); bounded, oldest out first.
        self._signed: dict[str, tuple[str, float]] = {}
        # Explicit, short bounds: the original service hung until the proxy cut the
        # request when S3 was unreachable from inside the VPC.
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # total_max_attempts counts the first try; "max_attempts" in this dict
            # counts retries only (S3_MAX_ATTEMPTS=1 made two tries, 6 s not 3 s).
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    def _unavailable(self, action: str, error: Exception) -> StorageUnavailable:
        where = self.endpoint_url or f"s3 bucket {self.bucket}"
        if isinstance(error, (S3ConnectionError, HTTPClientError)):
            # Not reached at all (no answer, refused, timed out): the next calls
            # would most likely wait out the same timeouts.
            self._failing_until = self._clock() + self.failure_cooldown
        else:
            self._answered()  # S3 answered, if only to refuse: calls may go ahead
        log.error(
            "storage %s failed at %s: %s: %s; %s",
            action,
            where,
            type(error).__name__,
            error,
            VPC_HINT,
        )
        return StorageUnavailable(f"photo storage is unavailable ({action} failed)")

    def _reachable(self, action: str) -> None:
        """Fail at once while S3 was unreachable within the last failure_cooldown seconds.

        Each call to an S3 that does not answer holds a request thread for its
        timeouts (seconds each, times the attempts). Four photo uploads then
        held every thread of a gthread worker, and the text entries and reads
        that worker had accepted waited behind them (resilience suite: two
        text entries per writer in 5 s). Failing fast frees the threads; the
        first call after the cool-down tries S3 again.
        """
        with self._failing_lock:
            now = self._clock()
            if now < self._failing_until:
                raise StorageUnavailable(
                    f"photo storage is unavailable ({action} not tried:"
                    " S3 did not answer moments ago)"
                )
            if self._failing_until:
                # The cool-down is over: this call tries S3; the others keep failing
                # fast until it answers, rather than all waiting out the timeouts again.
                self._failing_until = now + self.failure_cooldown

    def _answered(self) -> None:
        self._failing_until = 0.0

    def put(self, key: str, data: IO[bytes], *, content_type: str) -> None:
        self._reachable("upload")
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                CacheControl=IMMUTABLE_CACHE_CONTROL,
            )
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable("upload", error) from error
        self._answered()

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self._reachable("delete")
        for start in range(0, len(keys), 1000):  # S3's batch limit
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (BotoCoreError, ClientError) as error:
                raise self._unavailable("delete", error) from error
            if errors := response.get("Errors"):
                raise self._unavailable(
                    "delete", RuntimeError(f"{len(errors)} objects not deleted")
                )
        self._answered()

    def url(self, key: str) -> str:
        """A presigned GET URL, reused while it has at least a third of its life left.

        Signing is local (no round trip to S3), but botocore spends about a
        millisecond on each: a page of 20 photos in three sizes signed 60 URLs
        and that dominated its cost (bench/). Reuse also keeps the URL stable,
        so the browser's cache (objects are immutable) actually hits.
        """
        now = time.monotonic()
        cached = self._signed.get(key)
        if cached is not None and cached[1] - now > self.url_expires / 3:
            return cached[0]
        url = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.url_expires,
        )
        self._signed[key] = (url, now + self.url_expires)
        if len(self._signed) > SIGNED_URL_CACHE_SIZE:
            self._signed.pop(next(iter(self._signed)))  # the oldest signed
        return url

    def get(self, key: str) -> bytes:
        self._reachable("download")
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable("download", error) from error
        self._answered()
        return data

    def chunks(self, key: str, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        self._reachable("download")
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with closing(body):
                yield from body.iter_chunks(size)
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable("download", error) from error
        self._answered()

    def local_path(self, key: str) -> Path | None:
        return None  # clients fetch photos from S3 with presigned URLs

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every object in the bucket, a page of 1000 at a time."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"], item["LastModified"], item["Size"])
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable("listing", error) from error

    def describe(self) -> str:
        endpoint = f" endpoint={self.endpoint_url}" if self.endpoint_url else ""
        return f"s3 bucket={self.bucket} region={self.client.meta.region_name}{endpoint}"

    @property
    def endpoint(self) -> str:
        return self.client.meta.endpoint_url

    def _probe_client(self, timeout: float) -> Any:
        """A client like `client` but bounded by `timeout` and without retries (health checks)."""
        if timeout not in self._probe_clients:
            config = self.client.meta.config.merge(
                Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                )
            )
            self._probe_clients[timeout] = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, config=config
            )
        return self._probe_clients[timeout]

    def check(self, timeout: float) -> None:
        """Raise unless the bucket answers a HEAD within `timeout` seconds (readiness)."""
        self._probe_client(timeout).head_bucket(Bucket=self.bucket)

    def probe(self, timeout: float) -> str:
        key = f"doctor-probe/{uuid.uuid4().hex}.txt"
        client = self._probe_client(timeout)
        client.put_object(Bucket=self.bucket, Key=key, Body=b"diary doctor probe")
        client.delete_object(Bucket=self.bucket, Key=key)
        return f"s3://{self.bucket}/{key}"


class LocalStorage:
    """Photos in a folder, served by the app itself after an ownership check."""

    endpoint = None  # nothing on the network to trace

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("storage key escapes the storage folder")
        return path

    def put(self, key: str, data: IO[bytes], *, content_type: str) -> None:
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target and rename, so a reader never sees half a file.
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
                shutil.copyfileobj(data, out)
            os.replace(out.name, target)
        except OSError as error:
            log.error("local storage write failed for %s: %s", key, error)
            raise StorageUnavailable("photo storage is unavailable (upload failed)") from error

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.path(key).unlink(missing_ok=True)
            except OSError as error:
                raise StorageUnavailable("photo storage is unavailable (delete failed)") from error

    def url(self, key: str) -> str:
        return url_for("media.photo", key=key)

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except OSError as error:
            raise StorageUnavailable("photo storage is unavailable (download failed)") from error

    def chunks(self, key: str, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            with self.path(key).open("rb") as source:
                while chunk := source.read(size):
                    yield chunk
        except OSError as error:
            raise StorageUnavailable("photo storage is unavailable (download failed)") from error

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def iter_objects(self) -> Iterator[StoredObject]:
        if not self.root.exists():
            return
        for path in self.root.rglob("*"):
            if path.is_file():
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                yield StoredObject(str(path.relative_to(self.root)), modified, stat.st_size)

    def describe(self) -> str:
        return f"local folder={self.root}"

    def check(self, timeout: float) -> None:
        """Raise unless the folder exists (or can be made) and is writable (readiness)."""
        self.probe(timeout)

    def probe(self, timeout: float) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-") as probe:
            return probe.name


def init_app(app: Flask) -> None:
    config = app.config
    storage: Storage
    if config["BUCKET"]:
        storage = S3Storage(
            bucket=config["BUCKET"],
            region=config["AWS_REGION"],
            endpoint_url=config["S3_ENDPOINT_URL"],
            connect_timeout=config["S3_CONNECT_TIMEOUT"],
            read_timeout=config["S3_READ_TIMEOUT"],
            max_attempts=config["S3_MAX_ATTEMPTS"],
            url_expires=config["IMAGE_URL_EXPIRES"],
            failure_cooldown=config["S3_FAILURE_COOLDOWN"],
        )
    else:
        storage = LocalStorage(config["LOCAL_STORAGE_DIR"])
    app.extensions["diary.storage"] = storage


def current_storage() -> Storage:
    return current_app.extensions["diary.storage"]
