"""Which broker the workers talk to, what it may carry, and its errors as one line each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from kombu.utils.url import maybe_sanitize_url

from vault_store.errors import BackendUnavailable, ConfigError

# kombu's Redis transport pops a message (BRPOP) before it records it as unacknowledged (a
# MULTI of ZADD and HSET): a worker killed between the two drops the message for good (kombu
# issue #305, open since 2014). Ingest therefore runs on RabbitMQ only; Redis stays for the
# tasks queue, whose periodic jobs come round again and whose deletions are recorded in the
# catalog before they are queued (`vault-store deletion resume` runs one whose message is lost).
REDIS_INGEST_REFUSED = (
    "VAULT_STORE_BROKER_URL: ingest needs RabbitMQ (amqp://); a Redis broker can lose a message "
    "when a worker is killed (kombu issue #305), so it serves the tasks queue only"
)


def scheme(url: str) -> str:
    """The transport part of a broker URL: "redis", "amqp", "pyamqp"..."""
    return urlsplit(url).scheme.split("+", 1)[0].lower()


def is_redis(url: str) -> bool:
    """Whether `url` names a Redis broker (redis://, rediss://, redis+socket://)."""
    return scheme(url) in {"redis", "rediss"}


def is_amqp(url: str) -> bool:
    """Whether `url` names an AMQP (RabbitMQ) broker."""
    return scheme(url) in {"amqp", "amqps", "pyamqp"}


def shown(url: str) -> str:
    """The broker URL with its password hidden, fit for an error message or a log line."""
    return str(maybe_sanitize_url(url))


@contextmanager
def broker_errors(url: str, op: str) -> Iterator[None]:
    """A broker's refusal as one line naming the broker (password hidden): wrong credentials or
    a missing vhost are configuration errors (exit 2), a broker out of reach or one that
    stopped answering is unavailable (exit 6)."""
    from amqp.exceptions import AccessRefused, AMQPError, MessageNacked, NotAllowed
    from kombu.exceptions import OperationalError
    from redis.exceptions import AuthenticationError, ResponseError
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        yield
    except (AccessRefused, NotAllowed, AuthenticationError) as exc:
        raise ConfigError(f"broker {shown(url)} refused the connection: {_reason(exc)}") from None
    except MessageNacked:  # publisher confirms: the broker did not take this message
        raise BackendUnavailable(
            f"{shown(url)}: the broker refused a message (nack)", backend="broker", op=op
        ) from None
    except ResponseError as exc:  # e.g. NOAUTH: the URL carries no password Redis wants
        raise ConfigError(f"broker {shown(url)}: {_reason(exc)}") from None
    except (OperationalError, ConnectionError, RedisConnectionError, AMQPError, OSError) as exc:
        if isinstance(exc.__cause__, MessageNacked):  # kombu wraps it in OperationalError
            raise BackendUnavailable(
                f"{shown(url)}: the broker refused a message (nack)", backend="broker", op=op
            ) from None
        raise BackendUnavailable(f"{shown(url)}: {_reason(exc)}", backend="broker", op=op) from None


def _reason(exc: BaseException) -> str:
    """The broker's own words, on one line, without the URL (which may carry the password)."""
    text = " ".join(str(getattr(exc, "reply_text", "") or exc).split())
    return text or type(exc).__name__
