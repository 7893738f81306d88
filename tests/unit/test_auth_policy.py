"""Who may call what (ledger.auth.policy, principal) and when a server may start
(ledger.auth.settings), without a server."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from ledger.auth.__main__ import main, ttl_seconds
from ledger.auth.local import LocalCredentials, ensure_local_credentials
from ledger.auth.policy import ADMIN, POLICY, READ, WRITE, PermissionDenied, is_open, rule_for
from ledger.auth.principal import Principal, accounts_regex
from ledger.auth.settings import ServerSecurity, is_loopback
from ledger.environment import SettingsError
from ledger.v1 import commands_pb2, queries_pb2
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import queries_pb2 as q

READER = Principal("r", frozenset({READ}))
ADMIN_ONLY = Principal("a", frozenset({ADMIN}))
ACME = Principal("acme", frozenset({WRITE, READ}), ("acme-*",))


def _method(service: str, name: str) -> str:
    return f"/ledger.v1.{service}/{name}"


def _denied(principal: Principal, method: str, request: object) -> str:
    rule = rule_for(method)
    assert rule is not None
    with pytest.raises(PermissionDenied) as denied:
        rule.check(principal, request)
    return denied.value.message


def test_every_method_of_the_api_has_a_rule_and_nothing_else_does() -> None:
    methods = {
        _method(service.name, m.name)
        for file in (commands_pb2.DESCRIPTOR, queries_pb2.DESCRIPTOR)
        for service in file.services_by_name.values()
        for m in service.methods
    }
    assert set(POLICY) == methods
    assert rule_for("/ledger.v1.CommandService/Unknown") is None


def test_health_and_reflection_are_open_and_the_api_is_not() -> None:
    assert is_open("/grpc.health.v1.Health/Check")
    assert is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not is_open(_method("CommandService", "Deposit"))


def test_commands_need_the_write_scope() -> None:
    for name in ("OpenAccount", "Deposit", "Withdraw", "Transfer", "CloseAccount", "ExecuteBatch"):
        message = _denied(READER, _method("CommandService", name), object())
        assert message == "this call needs the scope ledger:write; the token has ledger:read"


def test_queries_need_the_read_scope_and_projection_status_takes_admin_too() -> None:
    for name in POLICY:
        if "QueryService" in name and not name.endswith("GetProjectionStatus"):
            _denied(ADMIN_ONLY, name, object())
    rule = rule_for(_method("QueryService", "GetProjectionStatus"))
    assert rule is not None
    rule.check(ADMIN_ONLY, q.GetProjectionStatusRequest())
    rule.check(READER, q.GetProjectionStatusRequest())


def test_a_restricted_token_acts_only_on_its_accounts() -> None:
    deposit = _method("CommandService", "Deposit")
    assert _denied(ACME, deposit, cmd.DepositRequest(account_id="globex-1")) == (
        "the token may act on accounts matching acme-*; globex-1 is not one of them"
    )
    rule = rule_for(deposit)
    assert rule is not None
    rule.check(ACME, cmd.DepositRequest(account_id="acme-1"))
    _denied(ACME, _method("QueryService", "GetAccount"), q.GetAccountRequest(account_id="globex-1"))
    _denied(
        ACME, _method("QueryService", "WatchAccount"), q.WatchAccountRequest(account_id="globex-1")
    )


def test_a_transfer_needs_the_account_it_debits() -> None:
    transfer = _method("CommandService", "Transfer")
    rule = rule_for(transfer)
    assert rule is not None
    rule.check(ACME, cmd.TransferRequest(from_account_id="acme-1", to_account_id="globex-1"))
    message = _denied(
        ACME, transfer, cmd.TransferRequest(from_account_id="globex-1", to_account_id="acme-1")
    )
    assert "globex-1 is not one of them" in message


def test_a_batch_needs_every_account_it_debits_or_changes_and_may_credit_any() -> None:
    batch = _method("CommandService", "ExecuteBatch")
    rule = rule_for(batch)
    assert rule is not None
    ours = [
        cmd.Command(open_account=cmd.OpenAccountRequest(account_id="acme-2")),
        cmd.Command(deposit=cmd.DepositRequest(account_id="acme-1")),
        cmd.Command(transfer=cmd.TransferRequest(from_account_id="acme-1", to_account_id="x-1")),
        cmd.Command(),  # holds nothing: the servicer's to refuse
    ]
    rule.check(ACME, cmd.ExecuteBatchRequest(commands=ours))
    for theirs in (
        cmd.Command(withdraw=cmd.WithdrawRequest(account_id="globex-1")),
        cmd.Command(close_account=cmd.CloseAccountRequest(account_id="globex-1")),
        cmd.Command(transfer=cmd.TransferRequest(from_account_id="globex-1")),
    ):
        request = cmd.ExecuteBatchRequest(commands=[*ours, theirs])
        assert "globex-1 is not one of them" in _denied(ACME, batch, request)


def test_get_accounts_needs_every_account_it_names() -> None:
    method = _method("QueryService", "GetAccounts")
    rule = rule_for(method)
    assert rule is not None
    rule.check(ACME, q.GetAccountsRequest(account_ids=["acme-1", "acme-2"]))
    request = q.GetAccountsRequest(account_ids=["acme-1", "globex-1"])
    assert "globex-1 is not one of them" in _denied(ACME, method, request)


_IDS = st.text(alphabet="ab-_.:1*?[]!", max_size=8)


@given(st.lists(_IDS, max_size=3), st.text(alphabet="ab-_.:1[]!", min_size=1, max_size=8))
def test_the_sql_regex_permits_exactly_what_fnmatch_does(patterns: list[str], account: str) -> None:
    # Python's re reads these constructs (.*, ., [..], [^..], \\x, (?:|), ^$) as PostgreSQL does.
    try:
        regex = re.compile(accounts_regex(tuple(patterns)))
    except re.error:
        return  # refused when the token is verified
    expected = any(fnmatchcase(account, p) for p in patterns)
    assert bool(regex.search(account)) == expected


def test_without_tls_and_tokens_a_server_refuses_to_start_naming_the_variables() -> None:
    with pytest.raises(SettingsError) as refused:
        ServerSecurity.from_env({}, "127.0.0.1:50051", "LEDGER_COMMAND_ADDR")
    for name in ("LEDGER_TLS_CERT", "LEDGER_TLS_KEY", "LEDGER_JWKS", "LEDGER_INSECURE=1"):
        assert name in str(refused.value)


def test_insecure_is_allowed_on_loopback_only() -> None:
    insecure = ServerSecurity.from_env({"LEDGER_INSECURE": "1"}, "127.0.0.1:1", "X")
    assert (insecure.credentials, insecure.verifier) == (None, None)
    for listen in ("0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "ledger.example:50051"):
        with pytest.raises(SettingsError, match=r"set LEDGER_COMMAND_ADDR to 127\.0\.0\.1:<port>"):
            ServerSecurity.from_env({"LEDGER_INSECURE": "1"}, listen, "LEDGER_COMMAND_ADDR")


def test_loopback_addresses() -> None:
    for listen in ("127.0.0.1:1", "127.3.4.5:1", "[::1]:1", "localhost:1", "unix:/tmp/s"):
        assert is_loopback(listen), listen
    for listen in ("0.0.0.0:1", "[::]:1", "192.168.1.2:1", "example.com:1", ":1"):
        assert not is_loopback(listen), listen


def test_tls_and_tokens_are_enough_on_any_address(tmp_path: Path) -> None:
    credentials = ensure_local_credentials(tmp_path)
    env = credentials.server_environment(client_ca=credentials.ca)
    secure = ServerSecurity.from_env(env, "0.0.0.0:50051", "X")
    assert secure.credentials is not None
    assert secure.verifier is not None
    assert secure.mutual_tls


def test_half_configured_security_is_refused(tmp_path: Path) -> None:
    credentials = ensure_local_credentials(tmp_path)
    full = credentials.server_environment()
    broken = (
        ({**full, "LEDGER_TLS_KEY": ""}, "go together"),
        ({**full, "LEDGER_JWT_ISSUER": ""}, "needs LEDGER_JWT_ISSUER"),
        ({**full, "LEDGER_TLS_CERT": str(tmp_path / "none.pem")}, "cannot read"),
        ({**full, "LEDGER_JWKS": "http://idp.example/jwks"}, "https"),
        ({**full, "LEDGER_INSECURE": "maybe"}, "LEDGER_INSECURE must be"),
    )
    for env, message in broken:
        with pytest.raises(SettingsError, match=message):
            ServerSecurity.from_env(env, "127.0.0.1:1", "X")


def test_local_credentials_are_made_once_with_private_files(tmp_path: Path) -> None:
    first = ensure_local_credentials(tmp_path)
    writer = first.token("writer")
    again = ensure_local_credentials(tmp_path)
    assert again.token("writer") == writer  # reused, not remade
    for secret in ("ca.key", "server.key", "signing.key", "writer.token", "reader.token"):
        assert (tmp_path / secret).stat().st_mode & 0o077 == 0, secret


def test_the_credentials_command_certifies_the_servers_for_the_extra_host_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "credentials"
    assert main(["credentials", "--directory", str(directory), "--host", "command-server"]) == 0
    certificate = x509.load_pem_x509_certificate((directory / "server.pem").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "command-server"]
    printed = capsys.readouterr().out
    assert "made the credentials" in printed
    assert LocalCredentials(directory).token("writer") not in printed


def test_token_lifetimes_read_as_durations() -> None:
    assert [ttl_seconds(t) for t in ("90", "90s", "15m", "1h", "30d")] == [
        90,
        90,
        900,
        3600,
        30 * 86400,
    ]


def test_a_restricted_token_lists_balances_but_may_not_ask_for_the_trial_balance() -> None:
    trial = _method("QueryService", "GetTrialBalance")
    assert "reads totals of the whole ledger" in _denied(ACME, trial, q.GetTrialBalanceRequest())
    for method, request in (
        (trial, q.GetTrialBalanceRequest()),
        (_method("QueryService", "ListBalancesAt"), q.ListBalancesAtRequest()),
    ):
        rule = rule_for(method)
        assert rule is not None
        rule.check(READER, request)
    rule = rule_for(_method("QueryService", "ListBalancesAt"))
    assert rule is not None
    rule.check(ACME, q.ListBalancesAtRequest())  # narrowed by the query server instead
