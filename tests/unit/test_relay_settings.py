"""Relay settings: GATEWAY_RELAY_* variables, flags over variables, cross-field rules."""

from __future__ import annotations

import pytest

from gateway.cli import build_parser
from gateway.relay.settings import RelaySettings
from gateway.relay.upstream import auth_header, ssl_setting


def test_environment_then_flags():
    environ = {"GATEWAY_RELAY_UPSTREAM": "https://mlflow.example.com", "GATEWAY_RELAY_UPSTREAM_MAX_RPS": "47",
               "GATEWAY_RELAY_ACK": "upstream"}
    settings = RelaySettings.from_env(environ, upstream_max_rps=10.0)
    assert (settings.upstream, settings.upstream_max_rps, settings.ack) == ("https://mlflow.example.com", 10.0, "upstream")
    args = build_parser().parse_args(["relay", "--upstream", "http://u:5000", "--spool-max-bytes", "1048576"])
    assert (args.upstream, args.spool_max_bytes, args.ack) == ("http://u:5000", 1048576, None)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "upstream must be an http:// or https:// URL"),
        ({"upstream": "http://u", "ack": "commit"}, r"Invalid enum value 'commit' - at `\$\.ack`"),
        ({"upstream": "http://u", "upstream_concurrency": 0}, "upstream_concurrency must be at least 1"),
        ({"upstream": "http://u", "spool_max_bytes": 1000}, "spool_max_bytes must be at least 64 KiB"),
        ({"upstream": "http://u", "host": "0.0.0.0"}, "host 0.0.0.0 is not a loopback address"),
    ],
)
def test_invalid_settings_name_the_setting(overrides, message):
    with pytest.raises(ValueError, match=message):
        RelaySettings.from_env({}, **overrides)


def test_listening_beyond_loopback_takes_an_explicit_flag():
    """The relay calls the upstream with its own credentials, so whoever reaches it writes as the relay."""
    assert RelaySettings.from_env({}, upstream="http://u", host="::1").host == "::1"
    args = build_parser().parse_args(["relay", "--upstream", "http://u", "--host", "0.0.0.0", "--insecure-no-auth"])
    settings = RelaySettings.from_env(
        {}, upstream=args.upstream, host=args.host, insecure_no_auth=args.insecure_no_auth
    )
    assert (settings.host, settings.insecure_no_auth) == ("0.0.0.0", True)
    environ = {"GATEWAY_RELAY_UPSTREAM": "http://u", "GATEWAY_RELAY_HOST": "10.0.0.5",
               "GATEWAY_RELAY_INSECURE_NO_AUTH": "true"}
    assert RelaySettings.from_env(environ).insecure_no_auth is True
    assert build_parser().parse_args(["relay", "--upstream", "http://u"]).insecure_no_auth is None


def test_upstream_credentials_as_the_stock_client_reads_them():
    assert auth_header({"MLFLOW_TRACKING_TOKEN": "t"}) == "Bearer t"
    assert auth_header({"MLFLOW_TRACKING_USERNAME": "a", "MLFLOW_TRACKING_PASSWORD": "b"}) == "Basic YTpi"
    assert auth_header({}) is None
    assert ssl_setting({"MLFLOW_TRACKING_INSECURE_TLS": "true"}) is False
    assert ssl_setting({}) is True
