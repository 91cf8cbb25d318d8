"""The one AWS seam: a typed client over boto3 for what publishing needs.

Every call goes through ``AwsClient.call``, which:

- waits on one ``RateLimiter`` shared by all threads before each Lambda
  control-plane call (Lambda throttles them per account);
- retries throttling (429 ``TooManyRequestsException``, honouring its
  ``retryAfterSeconds``), 5xx answers and dropped connections, with
  exponential backoff and jitter; botocore's own retries are off, so there is
  one policy, and ``sleep`` is injected so tests need not wait;
- turns what is left into ``AwsError`` (a ``LayerError``: the CLI prints one
  line), keeping the AWS error code for callers that expect some.

Credentials, profile and region come from the usual places (boto3's session),
and ``AWS_ENDPOINT_URL`` is honoured by botocore itself. Before any of it,
``read_aws_environment`` (pure) checks the variables this tool and botocore
read, and ``open_session`` / ``AwsClient.open_clients`` turn what botocore
itself refuses while making the session and clients (a missing profile, an
unreadable config file, a bad retry mode) into a ``UsageError``: a bad
environment is one line and exit 2 before any request, not a traceback.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayerError, UsageError

# Codes worth another try: throttling and the service's own failures.
RETRYABLE_CODES = frozenset({
    "TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded",
    "SlowDown", "ServiceException", "InternalError", "InternalFailure", "InternalServerError",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException",
    "EC2ThrottledException",
})
NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "404", "NotFound"})
# An S3 conditional write or delete that did not hold: another writer got there first.
_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
# The default region for account-level questions (STS, EC2 DescribeRegions).
HOME_REGION = "us-east-1"
# The services this tool calls, and the ones whose clients every AWS command needs (made up front).
SERVICES = ("sts", "lambda", "s3", "ec2", "ssm")
FIRST_CLIENTS = ("sts", "lambda", "s3")
# Where botocore takes an endpoint from: one for all services, or one per service (its service ID).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", *(f"AWS_ENDPOINT_URL_{service.upper()}" for service in SERVICES))
# botocore reads AWS_DEFAULT_REGION; AWS_REGION is what Lambda and the other SDKs set, checked for the same typo.
REGION_VARIABLES = ("AWS_DEFAULT_REGION", "AWS_REGION")
# The shape of a region name in any partition (us-east-1, us-gov-west-1, us-isob-east-1, cn-north-1); whether
# Lambda runs there is plan.check_regions' question, for the regions asked to publish in.
_REGION_SHAPE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_PLAIN_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")


def _hint_for(code: str, operation: str) -> str:
    """What to do about an AWS error that retrying will not fix."""
    if "AccessDenied" in code or code in ("UnauthorizedOperation", "AuthorizationError"):
        return f"the credentials may not call {operation}: see the README's IAM policy for publishing"
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
                "InvalidSignatureException", "SignatureDoesNotMatch"):
        return "the credentials are not valid here: check AWS_PROFILE or renew them"
    if "NotFound" in code or code in ("NoSuchKey", "NoSuchBucket"):
        return "check the name and region; it may have been deleted"
    return "see the AWS error code above in the service's documentation"


class AwsError(LayerError):
    """An AWS call failed (after retries, where retrying made sense)."""

    exit_code = 7

    def __init__(self, message: str, *, code: str = "", status: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class AwsSettings:
    """The retry policy as the environment tunes it (LAYERS_AWS_MAX_ATTEMPTS, LAYERS_AWS_BASE_DELAY)."""

    max_attempts: int = 8
    base_delay: float = 0.5


def read_aws_environment(environ: Mapping[str, str]) -> AwsSettings:
    """Check the AWS-related variables in ``environ`` and return the retry settings; ``UsageError`` names a bad one.

    Pure: reads only ``environ``. An empty endpoint or region variable is
    taken as unset, as botocore takes it; AWS_PROFILE is checked by
    ``open_session`` (whether it exists is in the config files).
    """
    max_attempts = AwsSettings.max_attempts
    text = environ.get("LAYERS_AWS_MAX_ATTEMPTS")
    if text is not None:
        # int() would also take "+3", "1_0" and " 3" (and refuse 5,000 digits with a ValueError): only a few
        # plain digits are a count.
        if len(text) > 3 or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 50:
            raise UsageError(f"LAYERS_AWS_MAX_ATTEMPTS={_shown(text)} is not a whole number from 1 to 50",
                             hint="how many times one AWS call is tried, e.g. 8 (the default when unset)")
        max_attempts = int(text)
    base_delay = AwsSettings.base_delay
    text = environ.get("LAYERS_AWS_BASE_DELAY")
    if text is not None:
        # float() would take "nan", "inf" and "-1"; a negative delay reaches time.sleep as a ValueError.
        if not _PLAIN_NUMBER.match(text) or not math.isfinite(float(text)) or not 0 <= float(text) <= 60:
            raise UsageError(f"LAYERS_AWS_BASE_DELAY={_shown(text)} is not a number of seconds from 0 to 60",
                             hint="the first retry's longest wait in seconds, e.g. 0.5 (the default when unset)")
        base_delay = float(text)
    # botocore ignores every endpoint variable when told to; a bad one is then harmless.
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() != "true":
        for name in ENDPOINT_VARIABLES:
            if environ.get(name):
                _check_endpoint(name, environ[name])
    for name in REGION_VARIABLES:
        value = environ.get(name)
        if value and not _REGION_SHAPE.match(value):
            raise UsageError(f"{name}={_shown(value)} is not an AWS region name",
                             hint=f"a region such as us-east-1, or unset {name} to use the profile's region")
    return AwsSettings(max_attempts=max_attempts, base_delay=base_delay)


def _check_endpoint(name: str, value: str) -> None:
    problem = None
    try:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https"):
            problem = "is not an http:// or https:// URL"
        elif not parts.hostname:
            problem = "names no host"
        else:
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number from 0 to 65535)
    except ValueError:  # "http://[::1", "http://host:99999"
        problem = "is not a URL"
    if problem is None and any(char.isspace() or not char.isprintable() for char in value):
        problem = "holds spaces or control characters"
    if problem:
        raise UsageError(f"{name}={_shown(value)} {problem}",
                         hint=f"an endpoint such as http://localhost:5000, or unset {name} to use AWS's own")


def open_session(environ: Mapping[str, str] | None = None):
    """A boto3 session; a missing profile or an unreadable config file is a ``UsageError``, not a traceback."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    environ = os.environ if environ is None else environ
    try:
        return boto3.session.Session()
    except ProfileNotFound as exc:
        profile = exc.kwargs.get("profile", "")
        # botocore takes the profile from AWS_PROFILE, else AWS_DEFAULT_PROFILE: name the one that said it.
        variable = next((n for n in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE") if environ.get(n) == profile),
                        "AWS_PROFILE")
        raise UsageError(f"{variable}={_shown(profile)} names no profile in "
                         f"{environ.get('AWS_CONFIG_FILE', '~/.aws/config')} or "
                         f"{environ.get('AWS_SHARED_CREDENTIALS_FILE', '~/.aws/credentials')}",
                         hint=f"'aws configure list-profiles' lists them; unset {variable} for the default") from None
    except (BotoCoreError, ValueError) as exc:
        raise UsageError(f"the AWS configuration cannot be read: {_one_line(exc)}", hint=_CONFIG_HINT) from None


_CONFIG_HINT = "check the AWS_* variables and the profile's settings (AWS_CONFIG_FILE, ~/.aws/config)"


def _shown(value: str, limit: int = 120) -> str:
    """A value as the error shows it: repr (quotes, escapes), cut short (an environment value can be long)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class Found:
    """A small S3 object as ``read_small`` returned it (a publish lease: lease.py)."""

    body: bytes
    etag: str
    last_modified: float | None     # seconds since the epoch, S3's clock


@dataclass(frozen=True)
class PublishedVersion:
    arn: str
    version: int
    description: str = ""
    code_sha256: str = ""   # only GetLayerVersion and PublishLayerVersion return it
    code_size: int = 0
    created: str = ""


class RateLimiter:
    """At most ``rate`` calls per second on average across all threads, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate
        self.burst = burst or max(1, int(rate))
        self.clock = clock
        self.sleep = sleep
        self._tat = 0.0  # "theoretical arrival time" of the next call at the steady rate (GCRA)
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            tat = max(self._tat, now)
            # Up to ``burst`` calls may run ahead of the steady rate.
            wait = max(0.0, tat - now - (self.burst - 1) * self.interval)
            self._tat = tat + self.interval
            self.waited += wait
        if wait > 0:
            self.sleep(wait)


@dataclass
class RetryRecord:
    operation: str
    region: str
    attempt: int
    reason: str
    delay: float


@dataclass
class AwsClient:
    """boto3 clients per (service, region), behind one retry policy and one rate limiter."""

    session: object = None
    sleep: Callable[[float], None] = time.sleep
    limiter: RateLimiter | None = None
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 20.0
    rng: random.Random = field(default_factory=random.Random)
    retries: list[RetryRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = open_session()
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------
    def client(self, service: str, region: str):
        with self._lock:  # sessions are not thread-safe; clients are
            key = (service, region)
            if key not in self._clients:
                from botocore.config import Config

                config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=300,
                                max_pool_connections=20,
                                s3={"addressing_style": "path"} if _custom_endpoint() else None)
                try:
                    self._clients[key] = self.session.client(service, region_name=region, config=config)
                except Exception as exc:
                    # botocore checks its settings here (retry and defaults modes, endpoints and regions from
                    # the config file), raising its own errors and plain ValueErrors: none is a bug of ours.
                    from botocore.exceptions import BotoCoreError

                    if not isinstance(exc, (BotoCoreError, ValueError)):
                        raise
                    raise UsageError(f"cannot make the AWS {service} client for {region}: {_one_line(exc)}",
                                     hint=_CONFIG_HINT) from None
            return self._clients[key]

    def open_clients(self, services: tuple[str, ...] = FIRST_CLIENTS) -> AwsClient:
        """Make the home region's clients now, without a request: what botocore refuses is refused before any work."""
        for service in services:
            self.client(service, _home_region(self.session))
        return self

    def call(self, service: str, region: str, operation: str, *,
             before_retry: Callable[[], object] | None = None, **params):
        """Call ``operation`` with retries. ``before_retry`` may return a result that makes retrying moot."""
        method = getattr(self.client(service, region), _snake(operation))
        return self._retrying(region, operation, lambda: method(**params), before_retry=before_retry,
                              rate_limited=(service == "lambda"))

    def _retrying(self, region: str, operation: str, invoke: Callable[[], object], *,
                  before_retry: Callable[[], object] | None = None, rate_limited: bool = False):
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ReadTimeoutError,
            ResponseStreamingError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.parsers import ResponseParserError

        last = ""
        for attempt in range(1, self.max_attempts + 1):
            if rate_limited and self.limiter is not None:
                self.limiter.acquire()
            try:
                return invoke()
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                message = error.get("Message") or str(exc)
                if code not in RETRYABLE_CODES and status < 500 and status != 429:
                    raise AwsError(f"{operation} in {region}: {code}: {message}", code=code, status=status,
                                   hint=_hint_for(code, operation)) from None
                last = f"{code or status}: {message}"
                delay = _retry_after(exc.response) or self._backoff(attempt)
            except (ConnectionClosedError, ReadTimeoutError, ResponseStreamingError, BotoConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
            except BotoCoreError as exc:
                raise AwsError(f"{operation} in {region}: {exc}",
                               hint="check AWS credentials and region (AWS_PROFILE, AWS_ENDPOINT_URL)") from None
            except ResponseParserError as exc:
                # Not a BotoCoreError: an answer that is not AWS's (a proxy's page, a wrong AWS_ENDPOINT_URL).
                first = " ".join(str(exc).split())[:200]
                raise AwsError(f"{operation} in {region}: the answer is not an AWS response ({first})",
                               hint="check AWS_ENDPOINT_URL and any proxy between here and AWS") from None
            if attempt == self.max_attempts:
                break
            self.retries.append(RetryRecord(operation, region, attempt, last, delay))
            self.sleep(delay)
            if before_retry is not None:
                done = before_retry()
                if done is not None:
                    return done
        raise AwsError(f"{operation} in {region} failed after {self.max_attempts} attempts: {last}",
                       hint="AWS is throttling or unreachable: run again later, or raise LAYERS_AWS_MAX_ATTEMPTS")

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads the regions' retries instead of synchronising them.
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    # -- account ----------------------------------------------------------
    def account_id(self) -> str:
        return self.call("sts", _home_region(self.session), "GetCallerIdentity")["Account"]

    def enabled_regions(self) -> list[str]:
        """The regions this account has enabled, in its own partition (aws, aws-cn, aws-us-gov)."""
        home = _home_region(self.session)
        answer = self.call("ec2", home, "DescribeRegions", AllRegions=False)
        partition = self.session.get_partition_for_region(home)
        return sorted(r["RegionName"] for r in answer["Regions"]
                      if r.get("OptInStatus", "opt-in-not-required") in ("opt-in-not-required", "opted-in")
                      and self.session.get_partition_for_region(r["RegionName"]) == partition)

    # -- layers -----------------------------------------------------------
    def layer_versions(self, region: str, name: str) -> list[PublishedVersion]:
        """Every version of the layer in ``region``, newest first (none: the layer does not exist)."""
        versions, marker = [], None
        while True:
            params = {"LayerName": name, **({"Marker": marker} if marker else {})}
            try:
                page = self.call("lambda", region, "ListLayerVersions", **params)
            except AwsError as error:
                if error.code in NOT_FOUND_CODES:
                    return []
                raise
            versions += [_published(item) for item in page.get("LayerVersions", [])]
            marker = page.get("NextMarker")
            if not marker:
                return sorted(versions, key=lambda v: -v.version)

    def layer_version(self, region: str, name: str, version: int) -> PublishedVersion | None:
        try:
            return _published(self.call("lambda", region, "GetLayerVersion", LayerName=name, VersionNumber=version))
        except AwsError as error:
            if error.code in NOT_FOUND_CODES:
                return None
            raise

    def latest_version(self, region: str, name: str) -> PublishedVersion | None:
        """The newest version, with its CodeSha256 (ListLayerVersions does not carry it)."""
        versions = self.layer_versions(region, name)
        return self.layer_version(region, name, versions[0].version) if versions else None

    def publish(self, region: str, name: str, content: dict, *, description: str, runtimes: list[str],
                architectures: list[str], license: str, code_sha256: str,
                newest_before: int = 0) -> tuple[PublishedVersion, bool]:
        """Publish a version; (version, adopted). ``adopted``: an earlier attempt's answer was lost, it had succeeded.

        PublishLayerVersion is not idempotent: before a retry, the versions
        newer than ``newest_before`` (the newest when the plan was made) are
        checked, and one with this zip's CodeSha256 is taken instead of
        publishing a duplicate.
        """
        def already_published():
            for version in self.layer_versions(region, name):
                if version.version <= newest_before:
                    continue
                full = self.layer_version(region, name, version.version)
                if full is not None and full.code_sha256 == code_sha256:
                    return full
            return None

        params = {"LayerName": name, "Content": content, "Description": description,
                  "CompatibleRuntimes": runtimes, "CompatibleArchitectures": architectures}
        if license:
            params["LicenseInfo"] = license
        answer = self.call("lambda", region, "PublishLayerVersion", before_retry=already_published, **params)
        if isinstance(answer, PublishedVersion):
            return answer, True
        return _published(answer), False

    def delete_version(self, region: str, name: str, version: int) -> None:
        self.call("lambda", region, "DeleteLayerVersion", LayerName=name, VersionNumber=version)

    def statement_ids(self, region: str, name: str, version: int) -> set[str]:
        import json

        try:
            answer = self.call("lambda", region, "GetLayerVersionPolicy", LayerName=name, VersionNumber=version)
        except AwsError as error:
            if error.code in NOT_FOUND_CODES:
                return set()
            raise
        policy = json.loads(answer.get("Policy") or "{}")
        return {statement.get("Sid", "") for statement in policy.get("Statement", [])}

    def grant(self, region: str, name: str, version: int, statement_id: str, principal: str,
              organization_id: str | None = None) -> None:
        params = {"LayerName": name, "VersionNumber": version, "StatementId": statement_id,
                  "Action": "lambda:GetLayerVersion", "Principal": principal}
        if organization_id:
            params["OrganizationId"] = organization_id
        try:
            self.call("lambda", region, "AddLayerVersionPermission", **params)
        except AwsError as error:
            if error.code != "ResourceConflictException":  # granted meanwhile, by an earlier attempt
                raise

    # -- prune: who still needs a layer version (issue 15) -------------------
    def layer_users(self, region: str, *, page_size: int = 50) -> dict[str, tuple[str, ...]]:
        """Every layer version ARN some function in ``region`` lists, with those functions.

        ListFunctions with FunctionVersion=ALL: every published version as
        well as $LATEST, because a published version pinned to an old layer
        version is what a rollback (CloudFormation's, say) configures again.
        Paged by Marker/NextMarker, at most 50 a page (Lambda's own cap,
        whatever MaxItems asks): one call per 50 function versions, each
        through the rate limiter. A function is named "name" for $LATEST,
        "name:3" for its published version 3.
        """
        users: dict[str, list[str]] = {}
        marker, seen = None, set()
        while True:
            params = {"FunctionVersion": "ALL", "MaxItems": page_size, **({"Marker": marker} if marker else {})}
            page = self.call("lambda", region, "ListFunctions", **params)
            for function in page.get("Functions") or []:
                name, version = function.get("FunctionName", "?"), function.get("Version", "$LATEST")
                label = name if version == "$LATEST" else f"{name}:{version}"
                for layer in function.get("Layers") or []:
                    if layer.get("Arn"):
                        users.setdefault(layer["Arn"], []).append(label)
            marker = page.get("NextMarker")
            if not marker:
                return {arn: tuple(names) for arn, names in users.items()}
            if marker in seen:  # an endpoint that pages in a circle would keep prune listing for ever
                raise AwsError(f"ListFunctions in {region} gave the same NextMarker twice",
                               hint="check AWS_ENDPOINT_URL and any proxy between here and AWS")
            seen.add(marker)

    def ssm_parameter(self, region: str, name: str) -> str | None:
        """The value of the SSM parameter ``name`` in ``region``; None when there is no such parameter."""
        try:
            return self.call("ssm", region, "GetParameter", Name=name)["Parameter"]["Value"]
        except AwsError as error:
            if error.code == "ParameterNotFound":
                return None
            raise

    # -- S3 staging ---------------------------------------------------------
    def ensure_bucket(self, region: str, bucket: str) -> bool:
        """Make sure ``bucket`` exists in ``region``, private and encrypted; True when created now."""
        try:
            self.call("s3", region, "HeadBucket", Bucket=bucket)
        except AwsError as error:
            if error.status == 403:
                raise AwsError(f"the S3 bucket {bucket} belongs to another account", code=error.code,
                               hint="choose another name with --bucket-template") from None
            if error.status != 404 and error.code not in NOT_FOUND_CODES:
                raise
        else:
            location = self.call("s3", region, "GetBucketLocation", Bucket=bucket).get("LocationConstraint")
            actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
            if actual != region:
                raise AwsError(f"the S3 bucket {bucket} is in {actual}, the layer is for {region} "
                               "(Lambda publishes only from a bucket in the layer's region: PermanentRedirect)",
                               hint="use a bucket template holding {region}")
            return False
        params = {"Bucket": bucket}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.call("s3", region, "CreateBucket", **params)
        except AwsError as error:
            if error.code not in ("BucketAlreadyOwnedByYou",):
                raise
        self.call("s3", region, "PutPublicAccessBlock", Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        self.call("s3", region, "PutBucketEncryption", Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        return True

    def staged_sha256(self, region: str, bucket: str, key: str) -> str | None:
        """The CodeSha256-style checksum of an object already staged, or None."""
        try:
            head = self.call("s3", region, "HeadObject", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except AwsError as error:
            if error.status == 404 or error.code in NOT_FOUND_CODES:
                return None
            raise
        return head.get("ChecksumSHA256") or head.get("Metadata", {}).get("code-sha256")

    def upload(self, region: str, bucket: str, key: str, path: Path, code_sha256: str,
               progress: Callable[[int], None] = lambda n: None) -> None:
        """PutObject with the zip's SHA256 checksum: S3 refuses a body that arrives different."""
        size = path.stat().st_size
        sent = {"bytes": 0}

        def put_once():
            with path.open("rb") as raw:
                body = _CountingReader(raw, size, lambda n: _advance(sent, n, progress))
                return self.client("s3", region).put_object(
                    Bucket=bucket, Key=key, Body=body, ContentLength=size, ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=code_sha256, Metadata={"code-sha256": code_sha256})

        def rewind():
            progress(-sent["bytes"])
            sent["bytes"] = 0
            return None

        # The body is reopened on every attempt; the progress bar goes back by what was sent.
        self._retrying(region, "PutObject", put_once, before_retry=rewind)

    # -- S3 conditional writes (publish leases: lease.py) -------------------------------
    def put_if_absent(self, region: str, bucket: str, key: str, body: bytes) -> str | None:
        """PutObject with If-None-Match: *: the new object's ETag, or None when an object is there already."""
        return self._conditional_put(region, bucket, key, body, IfNoneMatch="*")

    def put_if_match(self, region: str, bucket: str, key: str, body: bytes, etag: str) -> str | None:
        """PutObject with If-Match: replaces the object only if it is still ``etag``; None when it is not."""
        return self._conditional_put(region, bucket, key, body, IfMatch=etag)

    def _conditional_put(self, region: str, bucket: str, key: str, body: bytes, **condition) -> str | None:
        try:
            answer = self.call("s3", region, "PutObject", Bucket=bucket, Key=key, Body=body,
                               ContentType="application/json", **condition)
        except AwsError as error:
            # 412: the condition failed. 409 ConditionalRequestConflict: another conditional write to the key is
            # under way. NoSuchKey: an If-Match on an object deleted meanwhile. Each means "not yours now".
            if error.status in (409, 412) or error.code in _CONDITION_CODES:
                return None
            raise
        return answer.get("ETag", "")

    def read_small(self, region: str, bucket: str, key: str, limit: int):
        """GetObject of a small object: a ``Found`` (at most ``limit`` bytes of its body), or None."""

        def get_once():
            answer = self.client("s3", region).get_object(Bucket=bucket, Key=key)
            with answer["Body"] as stream:
                body = stream.read(limit)
            modified = answer.get("LastModified")
            return Found(body, answer.get("ETag", ""), modified.timestamp() if modified else None)

        try:
            return self._retrying(region, "GetObject", get_once)
        except AwsError as error:
            if error.status == 404 or error.code in NOT_FOUND_CODES:
                return None
            raise

    def delete_if_match(self, region: str, bucket: str, key: str, etag: str) -> bool:
        """DeleteObject with If-Match: True when deleted, False when it is another object now (or gone)."""
        try:
            self.call("s3", region, "DeleteObject", Bucket=bucket, Key=key, IfMatch=etag)
        except AwsError as error:
            if error.status in (409, 412) or error.code in _CONDITION_CODES:
                return False
            raise
        return True

    # -- SSM parameters written by publish -----------------------------------------------
    def parameters(self, region: str, names: tuple[str, ...]) -> dict[str, str | None]:
        """The values of ``names`` (None: no such parameter), asked 10 at a time (GetParameters' limit)."""
        values: dict[str, str | None] = dict.fromkeys(names)
        for start in range(0, len(names), 10):
            answer = self.call("ssm", region, "GetParameters", Names=list(names[start:start + 10]))
            for item in answer.get("Parameters", []):
                if item.get("Name") in values:
                    values[item["Name"]] = item.get("Value")
        return values

    def put_parameter(self, region: str, name: str, value: str, *, overwrite: bool, description: str) -> None:
        """A String parameter; without ``overwrite`` an existing one is an ``AwsError`` ParameterAlreadyExists."""
        self.call("ssm", region, "PutParameter", Name=name, Value=value, Type="String", DataType="text",
                  Description=description, Overwrite=overwrite)


def _advance(sent: dict, n: int, progress: Callable[[int], None]) -> None:
    sent["bytes"] += n
    progress(n)


class _CountingReader:
    """A file object that reports how many bytes were read from it (the upload's progress)."""

    def __init__(self, raw, size: int, on_read: Callable[[int], None]) -> None:
        self.raw, self.size, self.on_read = raw, size, on_read

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.on_read(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def __len__(self) -> int:
        return self.size


def _published(item: dict) -> PublishedVersion:
    content = item.get("Content") or {}
    return PublishedVersion(arn=item["LayerVersionArn"], version=int(item["Version"]),
                            description=item.get("Description", ""), code_sha256=content.get("CodeSha256", ""),
                            code_size=int(content.get("CodeSize", 0) or 0), created=item.get("CreatedDate", ""))


def _retry_after(response: dict) -> float | None:
    """Lambda's 429 says how long to wait, as a string field of the error body, or as Retry-After."""
    for value in (response.get("retryAfterSeconds"), response.get("Error", {}).get("retryAfterSeconds"),
                  response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")):
        try:
            if value is not None and float(value) >= 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _snake(operation: str) -> str:
    out = []
    for i, char in enumerate(operation):
        if char.isupper() and i and (not operation[i - 1].isupper() or
                                     (i + 1 < len(operation) and operation[i + 1].islower())):
            out.append("_")
        out.append(char.lower())
    return "".join(out)


def _custom_endpoint() -> bool:
    return bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))


def _home_region(session) -> str:
    return getattr(session, "region_name", None) or HOME_REGION
