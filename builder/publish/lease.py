"""One publisher at a time per region and zip: a lease object in the staging bucket.

Lambda has no conditional publish: two ``layers publish`` of one zip running
at once (two CI runners) would each make a version. So before publishing in
a region, the publisher writes ``leases/{layer}/{sha256}.json`` in that
region's staging bucket with S3's conditional write (``If-None-Match: *``):
exactly one writer succeeds. The holder re-reads the newest version under the
lease (an earlier holder may have published this zip meanwhile: it is then
adopted, not published again), publishes, and deletes the lease only if it
is still its own (``If-Match`` on its ETag). A loser waits, polling, and
tries again once the lease is gone, when it finds the holder's version and
adopts it. A holder that died leaves its lease behind until the expiry
written in it; then the next publisher takes it over with a conditional
overwrite on the dead lease's ETag, so of several waiters one wins.

The record format and every decision (who holds, expired, how long to wait)
are pure functions here, unit-tested with a fake clock; ``publish_under_lease``
runs the loop through ``AwsClient``'s S3 methods, with the clock and sleep
injected. A direct upload (``--direct``) has no bucket and so no lease: it
publishes as before (a lost answer is still adopted, not duplicated), and two
direct publishes of one zip at once can make two versions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import LayerError, UsageError
from .aws import AwsError, Found  # Found: what AwsClient.read_small returns

FORMAT = 1
# Longer than the slowest publish under the lease: ListLayerVersions, GetLayerVersion and PublishLayerVersion of a
# 250 MB layer from S3, each retried up to 8 times with backoff (about 3 minutes at worst). A crashed holder makes
# the others wait this long at most.
DEFAULT_LEASE_SECONDS = 600
MAX_LEASE_SECONDS = 3600
MAX_LEASE_BYTES = 4096
LEASE_VARIABLE = "LAYERS_LEASE_SECONDS"
_TOKEN = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class LeaseBusy(LayerError):
    """Another publish held the region's lease for longer than this one waits."""

    exit_code = 7


def lease_key(layer_name: str, sha256_hex: str) -> str:
    # Beside the staged zip's ``layers/`` prefix; per zip, so two different zips never wait for each other.
    return f"leases/{layer_name}/{sha256_hex}.json"


def read_lease_seconds(environ: Mapping[str, str]) -> int:
    """``LAYERS_LEASE_SECONDS``: a whole number of seconds from 1 to 3600 (default 600). Pure."""
    text = environ.get(LEASE_VARIABLE)
    if text is None:
        return DEFAULT_LEASE_SECONDS
    if len(text) > 4 or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LEASE_SECONDS:
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise UsageError(f"{LEASE_VARIABLE}={shown} is not a whole number of seconds from 1 to {MAX_LEASE_SECONDS}",
                         hint=f"how long a crashed publish blocks the others, e.g. {DEFAULT_LEASE_SECONDS} "
                              "(the default when unset)")
    return int(text)


def check_lease_seconds(seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_LEASE_SECONDS:
        raise UsageError(f"a lease of {seconds!r} seconds is not from 1 to {MAX_LEASE_SECONDS}",
                         hint=f"set {LEASE_VARIABLE} to a whole number of seconds, e.g. {DEFAULT_LEASE_SECONDS}")


# -- the record --------------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    """Who holds the lease and until when (seconds since the epoch, by the holder's clock)."""

    layer_name: str
    sha256: str
    host: str
    pid: int
    token: str          # random, per acquisition: tells this holder from a restarted one with the same pid
    acquired_at: float
    expires_at: float

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, "layer_name": self.layer_name, "sha256": self.sha256,
                           "host": self.host, "pid": self.pid, "token": self.token,
                           "acquired_at": self.acquired_at, "expires_at": self.expires_at},
                          sort_keys=True).encode()

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"


def new_lease(layer_name: str, sha256: str, *, host: str, pid: int, token: str, now: float, seconds: int) -> Lease:
    # A host name is the holder's to choose: kept printable and short, as it is shown to other publishers.
    host = "".join(c if c.isprintable() and not c.isspace() else "?" for c in host)[:253] or "?"
    return Lease(layer_name, sha256, host, pid, token, round(now, 3), round(now + seconds, 3))


def parse_lease(data: bytes, layer_name: str, sha256: str) -> Lease | None:
    """The lease in ``data``, or None when it is not one this tool wrote for this layer and zip.

    The object comes from whoever can write to the bucket: anything else
    (damaged, another format, a lease longer than ``MAX_LEASE_SECONDS``) is
    not trusted for its expiry; ``expiry`` then falls back to S3's
    LastModified.
    """
    if len(data) > MAX_LEASE_BYTES:
        return None
    try:
        item = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(item, dict) or item.get("format") != FORMAT or isinstance(item.get("format"), bool):
        return None
    host, pid, token = item.get("host"), item.get("pid"), item.get("token")
    acquired, expires = item.get("acquired_at"), item.get("expires_at")
    numbers_ok = all(isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n)
                     for n in (acquired, expires))
    if not (item.get("layer_name") == layer_name and item.get("sha256") == sha256 and _HEX64.fullmatch(sha256)
            and isinstance(host, str) and 0 < len(host) <= 253 and all(c.isprintable() for c in host)
            and isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31
            and isinstance(token, str) and _TOKEN.fullmatch(token)
            and numbers_ok and 0 < expires - acquired <= MAX_LEASE_SECONDS):
        return None
    return Lease(layer_name, sha256, host, pid, token, float(acquired), float(expires))


# -- decisions -----------------------------------------------------------------------
def expiry(record: Lease | None, found: Found, seconds: int) -> float:
    """When the lease found lapses: its own expiry, or (not a lease we can read) LastModified plus ours."""
    if record is not None:
        return record.expires_at
    if found.last_modified is not None:
        return found.last_modified + seconds
    return -math.inf  # neither readable nor dated: nothing says it is alive


def decide(record: Lease | None, found: Found, *, token: str, now: float, seconds: int, waited: float) -> str:
    """What a publisher that did not get the lease does next.

    ``"mine"``: the lease holds our own token (our write went through, its
    answer was lost). ``"take-over"``: it has expired. ``"give-up"``: we have
    waited ``wait_limit`` already. ``"wait"``: someone holds it.
    """
    if record is not None and record.token == token:
        return "mine"
    if now >= expiry(record, found, seconds):
        return "take-over"
    if waited >= wait_limit(seconds):
        return "give-up"
    return "wait"


def poll_interval(seconds: int) -> float:
    """How often a waiting publisher looks again: a twentieth of the lease, from 0.2 s to 2 s."""
    return min(2.0, max(0.2, seconds / 20))


def wait_limit(seconds: int) -> float:
    """How long a publisher waits for others' leases in all: one whole lease and a few polls."""
    return seconds + 5 * poll_interval(seconds)


def next_wait(record: Lease | None, found: Found, *, now: float, seconds: int) -> float:
    """Sleep one poll, or only until the lease lapses when that is sooner (never under 50 ms)."""
    return max(0.05, min(poll_interval(seconds), expiry(record, found, seconds) - now + 0.05))


# -- the loop (through AwsClient) -------------------------------------------------------
@dataclass(frozen=True)
class LeaseOutcome:
    version: object            # aws.PublishedVersion
    adopted: bool
    note: str = ""             # what the lease did, for the region's outcome ("" when it was simply taken)


# How many times in a row the lease may vanish between a refused write and its read before giving up.
_MAX_ROUNDS = 50


def publish_under_lease(aws, region: str, bucket: str, *, layer_name: str, sha256: str, code_sha256: str,
                        seconds: int, host: str, pid: int, new_token: Callable[[], str],
                        clock: Callable[[], float], sleep: Callable[[float], None],
                        publish: Callable[[int], tuple[object, bool]]) -> LeaseOutcome:
    """Take the region's lease, then adopt this zip's version if one is there, else ``publish(newest_before)``.

    ``aws`` is an ``AwsClient`` (its ``put_if_absent``, ``put_if_match``,
    ``read_small``, ``delete_if_match`` and ``latest_version``). The lease is
    deleted when done, also when publishing failed, so a waiter goes on at
    once; a failed delete is left to expire.
    """
    key = lease_key(layer_name, sha256)
    where = f"s3://{bucket}/{key}"
    start = clock()
    notes: list[str] = []
    rounds = 0
    found: Found | None = None   # the lease as last read; None: not there, as far as we know
    while True:
        token = new_token()
        mine = new_lease(layer_name, sha256, host=host, pid=pid, token=token, now=clock(), seconds=seconds)
        if found is None:
            etag = aws.put_if_absent(region, bucket, key, mine.to_bytes())
            if etag is not None:
                etag = _still_mine(aws, region, bucket, key, layer_name, sha256, token, etag)
            if etag is not None:
                break
            found = aws.read_small(region, bucket, key, MAX_LEASE_BYTES + 1)
            if found is None:  # released between our write and our read: try again
                rounds += 1
                if rounds > _MAX_ROUNDS:
                    raise LeaseBusy(f"the lease {where} in {region} keeps changing hands",
                                    hint="another publish of this zip is running: run again when it is done")
                continue
        rounds = 0
        record = parse_lease(found.body, layer_name, sha256)
        now = clock()
        choice = decide(record, found, token=token, now=now, seconds=seconds, waited=now - start)
        if choice == "mine":  # our write went through, its answer was lost and the retry was refused
            etag = found.etag
            break
        if choice == "take-over":
            etag = aws.put_if_match(region, bucket, key, mine.to_bytes(), found.etag)
            if etag is not None:
                etag = _still_mine(aws, region, bucket, key, layer_name, sha256, token, etag)
            if etag is not None:
                notes.append(f"took over the expired lease of {record.describe() if record else 'an unreadable lease'}")
                break
            found = aws.read_small(region, bucket, key, MAX_LEASE_BYTES + 1)  # another waiter took it over first
            continue
        if choice == "give-up":
            holder = f" ({record.describe()})" if record else ""
            raise LeaseBusy(f"another publish{holder} has held {where} in {region} for over "
                            f"{wait_limit(seconds):.0f} s",
                            hint=f"run again later; if no publish of this zip is running, delete {where}")
        if not notes:
            notes.append(f"waited for {record.describe() if record else 'another publish'}")
        sleep(next_wait(record, found, now=now, seconds=seconds))
        found = aws.read_small(region, bucket, key, MAX_LEASE_BYTES + 1)  # a poll is one read; gone: write again
    try:
        # Under the lease: a holder before us may have published this zip since the plan was made.
        newest = aws.latest_version(region, layer_name)
        if newest is not None and newest.code_sha256 == code_sha256:
            return LeaseOutcome(newest, True, "; ".join(notes))
        version, adopted = publish(newest.version if newest else 0)
        return LeaseOutcome(version, adopted, "; ".join(notes))
    finally:
        _release(aws, region, bucket, key, etag)


def _still_mine(aws, region: str, bucket: str, key: str, layer_name: str, sha256: str, token: str,
                etag: str) -> str | None:
    """Read the lease back after writing it: the ETag to release it by, or None when another write won.

    S3 decides conditional writes atomically, and there this read always
    finds our own; moto 5.2.5 checks the condition and then writes in two
    steps without a lock, so two writes arriving at once can both succeed
    there: the later one is the lease, and the earlier writer finds that out
    here and waits instead of publishing too.
    """
    try:
        found = aws.read_small(region, bucket, key, MAX_LEASE_BYTES + 1)
    except AwsError:
        _release(aws, region, bucket, key, etag)  # ours, most likely: the others need not wait for its expiry
        raise
    if found is None:
        return None
    record = parse_lease(found.body, layer_name, sha256)
    return found.etag if record is not None and record.token == token else None


def _release(aws, region: str, bucket: str, key: str, etag: str) -> None:
    try:
        aws.delete_if_match(region, bucket, key, etag)
    except AwsError:
        pass  # it expires by itself; the version is published, or the error that stopped it is on its way
