"""Redaction measured on a corpus generated here (seeded): secret-bearing log lines of many kinds, and benign
log lines that look close to them (token buckets, password resets, ids, hashes, trace ids, plain URLs).

Every secret is made up at run time from random characters in the shape of its kind, so no key-like literal
is committed. A secret counts as redacted when no word of it (3 characters or more) is left in the output.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable

from incident_rca.redact import is_secret_key, redact

SEED = 20261207
SECRET_LINES_PER_KIND = 9
BENIGN_LINES = 300

ALNUM = string.ascii_letters + string.digits
PUNCT = "!#$%*+-_.^~"


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def password(rng: random.Random) -> str:
    """A password: letters and digits with some punctuation, never a plain word."""
    core = list(rand(rng, rng.randint(8, 18)) + rand(rng, rng.randint(1, 3), PUNCT) + rand(rng, 2, string.digits))
    rng.shuffle(core)
    return "".join(core)


def two_words(rng: random.Random) -> str:
    return f"{rand(rng, 6, string.ascii_lowercase)}{rng.randint(10, 99)} {rand(rng, 7, string.ascii_lowercase)}!"


def b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def b64url(rng: random.Random, n: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(n)).decode().rstrip("=")


def ts(rng: random.Random) -> str:
    return f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
           f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"


def level(rng: random.Random) -> str:
    return rng.choice(["INFO", "WARN", "ERROR", "DEBUG"])


def svc(rng: random.Random) -> str:
    return rng.choice(["order-service", "payment-api", "auth-service", "inventory", "checkout", "gateway",
                       "billing-worker", "notification-svc"])


def prefix(rng: random.Random) -> str:
    return f"{ts(rng)} {level(rng)} [{svc(rng)}] "


def private_ip(rng: random.Random) -> str:
    return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])


def jwt(rng: random.Random) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').decode().rstrip("=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": rand(rng, 10), "exp": rng.randint(1, 9) * 10**9})
                                       .encode()).decode().rstrip("=")
    return f"{header}.{payload}.{b64url(rng, 64)}"


def pem(rng: random.Random, kind: str) -> str:
    body = b64(rng, 300)
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


# --- secret kinds: each returns (log line, the secret in it) -------------------------------------------

Kind = Callable[[random.Random], tuple[str, str]]


def kv_password(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(["password", "PASSWORD", "DB_PASSWORD", "db.password", "spring.datasource.password",
                       "dbPassword", "MYSQL_ROOT_PASSWORD", "PGPASSWORD", "passwd", "pwd", "admin_pass",
                       "redis.password", "smtpPassword", "Password"])
    sep = rng.choice(["=", ": ", " = ", ":", "=>"])
    value = password(rng)
    return f"{prefix(rng)}connecting to {private_ip(rng)}:5432 with user=app {name}{sep}{value} timeout=30s", value


def kv_token(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(["user_token", "access_token", "refresh_token", "authToken", "X-Auth-Token", "csrftoken",
                       "api_token", "GITLAB_TOKEN", "id_token", "sessionToken", "token", "VAULT_TOKEN",
                       "x-csrf-token"])
    value = rand(rng, rng.randint(16, 40), ALNUM + "-_")
    sep = rng.choice(["=", ": ", "="])
    return f"{prefix(rng)}retrying request {name}{sep}{value} attempt={rng.randint(1, 5)}", value


def kv_client_secret(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(["client_secret", "clientSecret", "AZURE_CLIENT_SECRET", "JWT_SECRET", "secret",
                       "app.secret", "webhook_secret", "SECRET_KEY", "DJANGO_SECRET_KEY", "oauth.client-secret"])
    value = password(rng)
    return f"{prefix(rng)}loaded config {name}={value} env=prod", value


def kv_api_key(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(["api_key", "apiKey", "X-Api-Key", "API-KEY", "DATADOG_API_KEY", "apikey", "mapsApiKey",
                       "SENDGRID_API_KEY", "license_key", "encryption_key"])
    value = rand(rng, 32, "0123456789abcdef")
    sep = rng.choice(["=", ": ", "="])
    return f"{prefix(rng)}outbound call to metrics.internal {name}{sep}{value}", value


def aws_secret_key(rng: random.Random) -> tuple[str, str]:
    value = rand(rng, 40, ALNUM + "/+")
    form = rng.choice([f"aws_secret_access_key={value}", f'"SecretAccessKey": "{value}"',
                       f"AWS_SECRET_ACCESS_KEY={value}", f"aws_secret_access_key = {value}"])
    return f"{prefix(rng)}boto credentials resolved {form}", value


def aws_access_key_id(rng: random.Random) -> tuple[str, str]:
    value = rng.choice(["AKIA", "ASIA"]) + rand(rng, 16, string.ascii_uppercase + string.digits)
    return f"{prefix(rng)}S3 PutObject denied for key {value} on bucket orders-archive", value


def aws_session_token(rng: random.Random) -> tuple[str, str]:
    value = b64(rng, 180)
    return f"{prefix(rng)}assumed role, aws_session_token={value}", value


def google_api_key(rng: random.Random) -> tuple[str, str]:
    value = "AI" + "za" + rand(rng, 35, ALNUM + "-_")
    return f"{prefix(rng)}geocoding request https://maps.googleapis.com/maps/api/geocode/json?address=x&key={value}", \
        value


def gcp_service_account(rng: random.Random) -> tuple[str, str]:
    key = pem(rng, "")
    body = key.split("\n")[2]
    doc = {"type": "service_account", "project_id": f"proj-{rand(rng, 6).lower()}",
           "private_key": key + "\n", "client_email": "svc@proj.iam.gserviceaccount.com"}
    return f"{prefix(rng)}loaded credentials file: {json.dumps(doc)}", body


def google_oauth(rng: random.Random) -> tuple[str, str]:
    value = rng.choice(["ya29." + rand(rng, 60, ALNUM + "-_"), "GOCSPX-" + rand(rng, 28, ALNUM + "-_")])
    return f"{prefix(rng)}oauth exchange returned {value} for scope drive.readonly", value


def azure_connection_string(rng: random.Random) -> tuple[str, str]:
    value = b64(rng, 64)
    return (f"{prefix(rng)}blob client init DefaultEndpointsProtocol=https;AccountName=st{rand(rng, 8).lower()};"
            f"AccountKey={value};EndpointSuffix=core.windows.net"), value


def azure_sas(rng: random.Random) -> tuple[str, str]:
    value = b64(rng, 32).replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    return (f"{prefix(rng)}GET https://st01.blob.core.windows.net/exports/report.csv?sv=2022-11-02&ss=b&srt=o"
            f"&sp=r&se=2026-12-01T00:00:00Z&sig={value} 403"), value


def jwt_plain(rng: random.Random) -> tuple[str, str]:
    value = jwt(rng)
    return f"{prefix(rng)}token validation failed for {value}: signature expired", value


def pem_key(rng: random.Random) -> tuple[str, str]:
    key = pem(rng, rng.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "]))
    return f"{prefix(rng)}could not parse key material:\n{key}\nfalling back to default", key.split("\n")[1]


def slack_token(rng: random.Random) -> tuple[str, str]:
    value = f"xox{rng.choice('bpa')}-{rand(rng, 12, string.digits)}-{rand(rng, 12, string.digits)}-{rand(rng, 24)}"
    return f"{prefix(rng)}slack notifier initialised with {value}", value


def slack_webhook(rng: random.Random) -> tuple[str, str]:
    value = rand(rng, 24)
    url = f"https://hooks.slack.com/services/T{rand(rng, 8, string.ascii_uppercase)}/B{rand(rng, 8)}/{value}"
    return f"{prefix(rng)}POST {url} returned 404 (channel archived?)", value


def github_token(rng: random.Random) -> tuple[str, str]:
    value = rng.choice(["ghp_", "gho_", "ghs_"]) + rand(rng, 36) if rng.random() < 0.7 else \
        "github_pat_" + rand(rng, 22) + "_" + rand(rng, 59)
    return f"{prefix(rng)}git clone failed using credential {value}", value


def stripe_key(rng: random.Random) -> tuple[str, str]:
    value = rng.choice(["sk_live_", "sk_test_", "rk_live_", "whsec_"]) + rand(rng, 24)
    return f"{prefix(rng)}stripe client configured key {value} (account acct_1ABC)", value


def bearer_header(rng: random.Random) -> tuple[str, str]:
    value = rand(rng, 40, ALNUM + "-._~")
    return f'{prefix(rng)}upstream 401 request headers {{"Authorization": "Bearer {value}"}}', value


def authorization_token(rng: random.Random) -> tuple[str, str]:
    scheme = rng.choice(["Token", "Digest", "ApiKey", "SSWS", ""])
    value = rand(rng, 30)
    return f"{prefix(rng)}> Authorization: {scheme + ' ' if scheme else ''}{value}", value


def basic_auth(rng: random.Random) -> tuple[str, str]:
    value = base64.b64encode(f"admin:{password(rng)}".encode()).decode()
    return f"{prefix(rng)}proxy request Proxy-Authorization: Basic {value}", value


def cookie_header(rng: random.Random) -> tuple[str, str]:
    value = rand(rng, 32)
    header = rng.choice([f"Cookie: sessionid={value}; theme=dark", f"Set-Cookie: SID={value}; Path=/; HttpOnly",
                         f"cookie: _app_session={value}"])
    return f"{prefix(rng)}{header}", value


def url_credentials(rng: random.Random) -> tuple[str, str]:
    value = rand(rng, 14, ALNUM + "!*-_.~")
    url = rng.choice([f"postgres://app:{value}@{private_ip(rng)}:5432/orders",
                      f"redis://:{value}@cache-1:6379/0", f"amqp://guest:{value}@rabbit:5672/",
                      f"mongodb+srv://svc:{value}@cluster0.mongodb.net/db",
                      f"https://deploy:{value}@registry.internal/v2/"])
    return f"{prefix(rng)}connection failed: {url} (ECONNREFUSED)", value


def presigned_url(rng: random.Random) -> tuple[str, str]:
    value = rand(rng, 64, "0123456789abcdef")
    return (f"{prefix(rng)}GET https://bucket.s3.amazonaws.com/export.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Date=20261123T090000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature={value} 403"), \
        value


def cli_flags(rng: random.Random) -> tuple[str, str]:
    value = password(rng)
    flag = rng.choice([f"--password {value}", f"--password={value}", f"--db-password {value}",
                       f"--token {value}", f"--client-secret '{value}'", f'--api-key "{value}"'])
    return f"{prefix(rng)}exec: /usr/bin/migrate --host db.internal {flag} --verbose", value


def json_fields(rng: random.Random) -> tuple[str, str]:
    value = two_words(rng) if rng.random() < 0.5 else password(rng)
    name = rng.choice(["password", "token", "secret", "apiKey", "client_secret", "accessToken", "passphrase"])
    doc = json.dumps({"user": f"u{rng.randint(1, 9999)}", name: value, "remember": True})
    return f"{prefix(rng)}login payload {doc}", value


def escaped_json(rng: random.Random) -> tuple[str, str]:
    value = two_words(rng)
    inner = json.dumps({"event": "login", "password": value})
    return json.dumps({"ts": ts(rng), "level": "ERROR", "message": f"bad request body: {inner}"}), value


def quoted_with_spaces(rng: random.Random) -> tuple[str, str]:
    value = two_words(rng)
    form = rng.choice([f'password: "{value}"', f"password='{value}'", f"export DB_PASSWORD='{value}'",
                       f'secret = "{value}"', f':password => "{value}"'])
    return f"{prefix(rng)}config line {form}", value


def passphrase(rng: random.Random) -> tuple[str, str]:
    value = password(rng)
    return f"{prefix(rng)}unlocking keystore passphrase={value} alias=tls", value


def xml_element(rng: random.Random) -> tuple[str, str]:
    value = password(rng)
    tag = rng.choice(["password", "Password", "apiToken", "secret"])
    return f"{prefix(rng)}SOAP request <auth><user>svc</user><{tag}>{value}</{tag}></auth>", value


def package_tokens(rng: random.Random) -> tuple[str, str]:
    value = rng.choice(["npm_" + rand(rng, 36), "pypi-AgEIcHlwaS5vcmc" + rand(rng, 60, ALNUM + "-_"),
                        "glpat-" + rand(rng, 20, ALNUM + "-_"), "hf_" + rand(rng, 34),
                        "SG." + rand(rng, 22, ALNUM + "-_") + "." + rand(rng, 43, ALNUM + "-_"),
                        "sk-" + rand(rng, 48), "sk-proj-" + rand(rng, 40, ALNUM + "-_")])
    return f"{prefix(rng)}publishing artifact with credential {value} failed: 403", value


def chat_webhooks(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        value = f"{rng.randint(10**8, 10**9)}:AA{rand(rng, 33, ALNUM + '-_')}"
        return f"{prefix(rng)}telegram bot {value} sendMessage failed", value
    value = rand(rng, 68, ALNUM + "-_")
    return f"{prefix(rng)}POST https://discord.com/api/webhooks/{rng.randint(10**17, 10**18)}/{value} 429", value


def twilio_mailgun(rng: random.Random) -> tuple[str, str]:
    value = rng.choice(["SK" + rand(rng, 32, "0123456789abcdef"), "key-" + rand(rng, 32, "0123456789abcdef")])
    return f"{prefix(rng)}sms provider auth using {value}", value


SECRET_KINDS: dict[str, Kind] = {f.__name__: f for f in (
    kv_password, kv_token, kv_client_secret, kv_api_key, aws_secret_key, aws_access_key_id, aws_session_token,
    google_api_key, gcp_service_account, google_oauth, azure_connection_string, azure_sas, jwt_plain, pem_key,
    slack_token, slack_webhook, github_token, stripe_key, bearer_header, authorization_token, basic_auth,
    cookie_header, url_credentials, presigned_url, cli_flags, json_fields, escaped_json, quoted_with_spaces,
    passphrase, xml_element, package_tokens, chat_webhooks, twilio_mailgun)}


# --- benign lines --------------------------------------------------------------------------------------

def benign_line(rng: random.Random) -> str:
    trace = uuid.UUID(int=rng.getrandbits(128)).hex
    span = rand(rng, 16, "0123456789abcdef")
    rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    digest = rand(rng, 64, "0123456789abcdef")
    user = rng.randint(1, 99999)
    ms = rng.randint(1, 30000)
    ip = private_ip(rng)
    path = rng.choice(["/api/v1/orders", "/api/v2/cart/items", "/healthz", "/login", "/api/v1/users/42/profile",
                       "/static/app.js", "/api/v1/payments/authorize"])
    templates = [
        f"{prefix(rng)}token bucket refilled: capacity=100 available={rng.randint(0, 100)} refill_rate=10/s",
        f"{prefix(rng)}rate limiter token bucket empty for tenant t-{user}, rejecting request",
        f"{prefix(rng)}password reset requested for user {user}",
        f"{prefix(rng)}password reset email queued for user id={user} template=reset_v2",
        f"{prefix(rng)}request_id={rid} trace_id={trace} span_id={span} completed in {ms}ms",
        f"{prefix(rng)}request hash sha256={digest} cached=true",
        f'{ip} - - [23/Nov/2026:09:{rng.randint(10, 59)}:12 +0000] "GET {path}?page={rng.randint(1, 9)}&sort=asc '
        f'HTTP/1.1" {rng.choice([200, 200, 304, 404, 500])} {rng.randint(100, 99999)} "-" "Mozilla/5.0"',
        f"{prefix(rng)}GET https://api.partner.example{path}?page={rng.randint(1, 9)}&limit=50 -> 200 in {ms}ms",
        f"{prefix(rng)}HikariPool-1 - Connection is not available, request timed out after {ms}ms.",
        f"{prefix(rng)}java.net.SocketTimeoutException: Read timed out at {ip}:8080",
        f"{prefix(rng)}consumer group incident-stream lag={rng.randint(0, 5000)} partition={rng.randint(0, 5)}",
        f"{prefix(rng)}GC pause (G1 Evacuation Pause) {rng.randint(1, 400)}ms, heap {rng.randint(100, 900)}M->"
        f"{rng.randint(50, 400)}M",
        f"{prefix(rng)}token_type=bearer expires_in=3600 scope=read:orders granted for client c-{user}",
        f"{prefix(rng)}session started for user {user} (session length limit 30m)",
        f"{prefix(rng)}secret rotation scheduled: secret_name=db-creds next_rotation=2026-12-01",
        f"{prefix(rng)}login failed for user {user}: invalid password (attempt {rng.randint(1, 5)} of 5)",
        f"{prefix(rng)}jwt validation enabled, signature_algorithm=RS256 jwks_cache_ttl=300s",
        f"{prefix(rng)}cache key=user:{user}:cart hit ratio=0.{rng.randint(10, 99)}",
        f"{prefix(rng)}slow query {ms}ms: SELECT * FROM orders WHERE customer_id = ? AND status = 'open'",
        f"{prefix(rng)}pod checkout-{rand(rng, 5, 'abcdef0123456789')} OOMKilled, restarting "
        f"(restarts={rng.randint(1, 9)})",
        f"{prefix(rng)}published {rng.randint(1, 500)} events to topic logs.events offset={rng.randint(1, 10**7)}",
        f"{prefix(rng)}upstream connect error or disconnect/reset before headers. reset reason: connection failure, "
        f"transport failure reason: delayed connect error: 111",
        f"{prefix(rng)}max_tokens=1024 tokens_used={rng.randint(10, 1024)} model=summarizer-v2",
        f"{prefix(rng)}commit {rand(rng, 40, '0123456789abcdef')} deployed to prod by pipeline {rng.randint(1, 999)}",
        f"{prefix(rng)}order {rng.randint(10**5, 10**6)} state=PAYMENT_PENDING amount=49.90 currency=EUR",
        f"{prefix(rng)}Retrying in {rng.randint(1, 30)}s (attempt {rng.randint(1, 5)}/5): 503 Service Unavailable",
        f"{prefix(rng)}TLS handshake with {ip}:443 ok, cipher=TLS_AES_128_GCM_SHA256",
        f"{prefix(rng)}disk usage /var/lib/kafka {rng.randint(50, 99)}% on broker-{rng.randint(1, 3)}",
        f'{{"ts": "{ts(rng)}", "level": "INFO", "msg": "request completed", "status": 200, '
        f'"duration_ms": {ms}, "trace_id": "{trace}", "user_id": {user}}}',
        f"{prefix(rng)}feature flag checkout.new_flow enabled for {rng.randint(1, 100)}% of users",
        f"{prefix(rng)}event_ts={int(time.time() * 1000) - rng.randint(0, 10**9)} lag_ms={ms}",
        f"{prefix(rng)}no API key configured for provider 'maps'; falling back to cached tiles",
        f"{prefix(rng)}CSRF token missing or incorrect for POST {path}",
        f"{prefix(rng)}Kubernetes secret mounted at /etc/secrets/db (keys: username, password)",
    ]
    return rng.choice(templates)


# --- the measurements ----------------------------------------------------------------------------------

def _leaked(secret: str, output: str) -> bool:
    words = [w for w in secret.split() if len(w) >= 3] or [secret]
    return any(w in output for w in words)


def test_secret_corpus_is_redacted() -> None:
    rng = random.Random(SEED)
    cases = [(kind, *make(rng)) for kind, make in SECRET_KINDS.items() for _ in range(SECRET_LINES_PER_KIND)]
    assert len(SECRET_KINDS) >= 25 and len(cases) >= 200
    started = time.perf_counter()
    missed = [(kind, line) for kind, line, secret in cases if _leaked(secret, out := redact(line))
              or "<redacted" not in out]
    elapsed = time.perf_counter() - started
    assert len(missed) <= 0.01 * len(cases), f"{len(missed)} of {len(cases)} missed: {missed[:10]}"
    # Fast enough for the sample lines it is given (a prompt holds a few hundred lines at most).
    assert elapsed / len(cases) < 0.005, f"{elapsed / len(cases) * 1000:.2f} ms per line"


def test_benign_corpus_is_left_alone() -> None:
    rng = random.Random(SEED + 1)
    lines = [benign_line(rng) for _ in range(BENIGN_LINES)]
    assert len(set(lines)) >= 200
    altered = [(line, redact(line)) for line in lines if redact(line) != line]
    assert len(altered) <= 0.01 * len(lines), f"{len(altered)} of {len(lines)} altered: {altered[:10]}"


def test_every_kind_is_caught_in_every_example() -> None:
    """Per kind, not only overall: a kind that is missed every time would hide under the 1 % budget."""
    rng = random.Random(SEED + 2)
    misses = Counter(kind for kind, make in SECRET_KINDS.items() for _ in range(3)
                     for line, secret in [make(rng)] if _leaked(secret, redact(line)))
    assert not misses, misses


def test_key_names_that_name_secrets() -> None:
    for name in ("DB_PASSWORD", "aws_secret_access_key", "user_token", "X-Amz-Signature", "sig", "clientSecret",
                 "PGPASSWORD", "passphrase", "x-api-key", "AccountKey", "--db-password", "spring.datasource.password"):
        assert is_secret_key(name), name
    for name in ("token_bucket_size", "max_tokens", "password_reset", "secret_name", "token_type", "key", "user",
                 "session_length", "signature_algorithm", "bypass", "api_key_id"):
        assert not is_secret_key(name), name
