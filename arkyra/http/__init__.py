"""HTTP at the edge: the shared client, same-provider retries, Retry-After, SSRF guard, paging."""

from arkyra.http.client import build_client, close_client, get_client
from arkyra.http.retry import call_with_retries, parse_retry_after

__all__ = ["build_client", "call_with_retries", "close_client", "get_client", "parse_retry_after"]
