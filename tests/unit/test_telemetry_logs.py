"""configure_logging: one line per event, JSON on request, level and format from the environment."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from ledger.telemetry.logs import configure_logging


@pytest.fixture(autouse=True)
def restored_root_logger() -> Iterator[None]:
    """configure_logging rewires the root logger: give the next test pytest's wiring back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_service_level_logger_message_and_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("query-server", {"LEDGER_LOG_FORMAT": "json"})
    logging.getLogger("query_server.app").info(
        "serving on %s", "127.0.0.1:50052", extra={"account_id": "acc-1", "attempt": 2}
    )
    [line] = _lines(capsys)
    event = json.loads(line)
    assert event.pop("ts").endswith("Z")
    assert event == {
        "level": "INFO",
        "service": "query-server",
        "logger": "query_server.app",
        "message": "serving on 127.0.0.1:50052",
        "account_id": "acc-1",
        "attempt": 2,
    }


def test_an_exception_stays_on_its_events_line(capsys: pytest.CaptureFixture[str]) -> None:
    for form in ("json", "text"):
        configure_logging("projector", {"LEDGER_LOG_FORMAT": form})
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            logging.getLogger("projector").exception("batch failed\nbadly")
        [line] = _lines(capsys)
        if form == "json":
            event = json.loads(line)
            assert event["message"] == "batch failed\nbadly"
            assert "Traceback" in event["exception"]
            assert "ValueError: line one\nline two" in event["exception"]
        else:
            assert "ERROR projector projector: batch failed\\nbadly exception=" in line
            assert "ValueError: line one\\nline two" in line


def test_text_is_the_default_with_quoted_extras(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("command-server", {})
    logging.getLogger("command_server").warning(
        "slow commit", extra={"seconds": 1.5, "why": "broker busy"}
    )
    [line] = _lines(capsys)
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("Z")
    assert (
        rest == 'WARNING command-server command_server: slow commit seconds=1.5 why="broker busy"'
    )


def test_the_level_comes_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("query-server", {"LEDGER_LOG_LEVEL": "warning"})
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [line.rsplit(": ", 1)[1] for line in _lines(capsys)] == ["shown"]

    configure_logging("query-server", {"LEDGER_LOG_LEVEL": "DEBUG"})
    logging.getLogger("x").debug("details")
    assert len(_lines(capsys)) == 1


def test_bad_settings_fall_back_to_the_defaults_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("query-server", {"LEDGER_LOG_LEVEL": "loud", "LEDGER_LOG_FORMAT": "xml"})
    logging.getLogger("x").info("still logging")
    lines = _lines(capsys)
    assert "LEDGER_LOG_LEVEL='LOUD' is not one of DEBUG, INFO" in lines[0]
    assert "LEDGER_LOG_FORMAT='xml' is neither text nor json" in lines[1]
    assert lines[2].endswith("INFO query-server x: still logging")


def test_replaces_earlier_handlers_and_captures_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.basicConfig(format="%(message)s", force=True)
    configure_logging("query-server", {"LEDGER_LOG_FORMAT": "json"})
    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    logging.getLogger("x").warning("once")
    lines = _lines(capsys)
    assert [json.loads(line)["logger"] for line in lines] == ["py.warnings", "x"]
