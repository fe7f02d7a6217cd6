"""Schemathesis checks for referral-server, loaded by .ci/audit/run through SCHEMATHESIS_HOOKS.

The server answers client mistakes (unknown ids, bad input, a role that may not run an
operation) with GraphQL errors that carry a `path`, which Schemathesis' own
`not_a_server_error` takes for server failures in GraphQL mode. So the run excludes that
check and uses these instead, which follow the contract (shared/contract/README.md):

- no_5xx: no response has a 5xx status;
- no_internal_error: no GraphQL error has `extensions.code` = INTERNAL (the server's own
  failure; the contract says it never answers a client's mistake);
- error_codes: every GraphQL error carries `extensions.code`, one of the contract's codes.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

CODES = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "PROGRAM_DISABLED",
        "INSUFFICIENT_BALANCE",
        "CLAIM_LIMIT",
        "CODE_TAKEN",
        "IDEMPOTENCY_CONFLICT",
        "BELOW_MINIMUM_WITHDRAWAL",
        "NOT_AN_AFFILIATE",
        "RATE_LIMITED",
        "INTERNAL",
    }
)


# `Decimal` is a string such as "10.50" (a JSON number is taken where it converts exactly);
# Schemathesis knows no strategy for it. Mostly well-formed amounts, some of them out of range
# or too precise, and some junk: each must be answered, never with INTERNAL.
_DECIMAL_TEXT = st.one_of(
    st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False, allow_infinity=False).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["0", "-0", "0.000001", "0.0000001", "1e3", "1E-7", "NaN", "Infinity", "-1",
                     "79228162514264337593543950335", "79228162514264337593543950336",
                     "99999999999999999999999999999.999999", " 1", "1,5", "", "abc"]),
    st.text(max_size=12),
)
schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(_DECIMAL_TEXT.map(nodes.String), st.integers().map(nodes.Int), st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float)),
)


def _errors(response) -> list:
    """The `errors` of a GraphQL response body; [] when there are none or the body is not JSON."""
    try:
        payload = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(payload, dict):
        return []
    errors = payload.get("errors")
    return errors if isinstance(errors, list) else []


def _code(error) -> object:
    if not isinstance(error, dict):
        return None
    extensions = error.get("extensions")
    return extensions.get("code") if isinstance(extensions, dict) else None


def _short(error) -> str:
    text = json.dumps(error, ensure_ascii=False)
    return text if len(text) <= 500 else text[:500] + "…"


@schemathesis.check
def no_5xx(ctx, response, case):
    """The server never answers with a 5xx status."""
    if response.status_code >= 500:
        body = response.content[:500].decode("utf-8", "replace")
        raise AssertionError(f"status {response.status_code}: {body}")


@schemathesis.check
def no_internal_error(ctx, response, case):
    """No GraphQL error is INTERNAL: every request here is a client's, good or bad."""
    internal = [error for error in _errors(response) if _code(error) == "INTERNAL"]
    if internal:
        raise AssertionError("extensions.code INTERNAL: " + "; ".join(_short(e) for e in internal))


@schemathesis.check
def error_codes(ctx, response, case):
    """Every GraphQL error carries extensions.code, one of the contract's codes."""
    bad = [error for error in _errors(response) if _code(error) not in CODES]
    if bad:
        raise AssertionError("error without a contract code: " + "; ".join(_short(e) for e in bad))
