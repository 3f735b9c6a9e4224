"""RFC 1661 section 4.1, cell by cell, and hypothesis over every (state, event) pair.

The table below is transcribed from the RFC text, independently of ppp.fsm.TRANSITIONS; each
cell is checked by *running* the automaton from that state and observing what it does (packets
sent, handler callbacks, restart counter), not by comparing the two tables.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ppp.frame import Code
from ppp.fsm import Event, Fsm, FsmConfig, FsmError, State

RFC_1661_TABLE = """
      | 0         1          2          3              4        5
 Up   | 2         irc,scr/6  -          -              -        -
 Down | -         -          0          tls/1          0        1
 Open | tls/1     1          irc,scr/6  3r             5r       5r
 Close| 0         tlf/0      2          2              4        4
 TO+  | -         -          -          -              str/4    str/5
 TO-  | -         -          -          -              tlf/2    tlf/3
 RCR+ | -         -          sta/2      irc,scr,sca/8  4        5
 RCR- | -         -          sta/2      irc,scr,scn/6  4        5
 RCA  | -         -          sta/2      sta/3          4        5
 RCN  | -         -          sta/2      sta/3          4        5
 RTR  | -         -          sta/2      sta/3          sta/4    sta/5
 RTA  | -         -          2          3              tlf/2    tlf/3
 RUC  | -         -          scj/2      scj/3          scj/4    scj/5
 RXJ+ | -         -          2          3              4        5
 RXJ- | -         -          tlf/2      tlf/3          tlf/2    tlf/3
 RXR  | -         -          2          3              4        5

      | 6           7           8           9
 Up   | -           -           -           -
 Down | 1           1           1           tld/1
 Open | 6           7           8           9r
 Close| irc,str/4   irc,str/4   irc,str/4   tld,irc,str/4
 TO+  | scr/6       scr/6       scr/8       -
 TO-  | tlf/3p      tlf/3p      tlf/3p      -
 RCR+ | sca/8       sca,tlu/9   sca/8       tld,scr,sca/8
 RCR- | scn/6       scn/7       scn/6       tld,scr,scn/6
 RCA  | irc/7       scr/6x      irc,tlu/9   tld,scr/6x
 RCN  | irc,scr/6   scr/6x      irc,scr/8   tld,scr/6x
 RTR  | sta/6       sta/6       sta/6       tld,zrc,sta/5
 RTA  | 6           6           8           tld,scr/6
 RUC  | scj/6       scj/7       scj/8       scj/9
 RXJ+ | 6           6           8           9
 RXJ- | tlf/3       tlf/3       tlf/3       tld,irc,str/5
 RXR  | 6           7           8           ser/9
"""


def _parse() -> list[tuple[State, Event, tuple[str, ...] | None, State | None]]:
    cells: list[tuple[State, Event, tuple[str, ...] | None, State | None]] = []
    columns: list[int] = []
    for line in RFC_1661_TABLE.strip("\n").splitlines():
        if not line.strip():
            continue
        head, _, rest = line.partition("|")
        fields = rest.split()
        if not head.strip():
            columns = [int(f) for f in fields]
            continue
        event = Event(head.strip())
        for column, cell in zip(columns, fields, strict=True):
            if cell == "-":
                cells.append((State(column), event, None, None))
                continue
            actions, _, target = cell.rpartition("/") if "/" in cell else ("", "", cell)
            target = target.rstrip("rpx")
            cells.append(
                (
                    State(column),
                    event,
                    tuple(a for a in actions.split(",") if a),
                    State(int(target)),
                )
            )
    return cells


CELLS = _parse()
CONFIG = FsmConfig(restart_timer=3.0, max_configure=10, max_terminate=2, max_failure=5)
START_COUNT = 5  # distinguishable from both Max-Configure and Max-Terminate


class Recorder:
    """An option handler and send function that log what the automaton does."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def reset(self) -> None:
        pass

    def add_ci(self) -> bytes:
        return b"\x05\x06\x00\x00\x00\x01"

    def ack_ci(self, data: bytes) -> bool:
        return True

    def nak_ci(self, data: bytes, treat_as_reject: bool) -> bool:
        return True

    def reject_ci(self, data: bytes) -> bool:
        return True

    def request_ci(self, data: bytes, reject_if_disagree: bool) -> tuple[int, bytes]:
        return Code.CONFACK, data

    def up(self, now: float) -> None:
        self.log.append("tlu")

    def down(self, now: float) -> None:
        self.log.append("tld")

    def starting(self, now: float) -> None:
        self.log.append("tls")

    def finished(self, now: float) -> None:
        self.log.append("tlf")

    def extended_code(self, code: int, identifier: int, data: bytes, now: float) -> Event | None:
        return None

    def code_rejected(self, code: int) -> None:
        pass

    def echo_reply(self, data: bytes) -> bytes:
        return data

    def send(self, code: int, identifier: int, data: bytes) -> None:
        self.log.append(
            {
                Code.CONFREQ: "scr",
                Code.CONFACK: "sca",
                Code.CONFNAK: "scn",
                Code.CONFREJ: "scn",
                Code.TERMREQ: "str",
                Code.TERMACK: "sta",
                Code.CODEREJ: "scj",
                Code.ECHOREP: "ser",
            }[Code(code)]
        )


def _machine(state: State) -> tuple[Fsm, Recorder]:
    recorder = Recorder()
    fsm = Fsm(recorder, CONFIG)
    fsm.state = state
    fsm.restart_count = START_COUNT
    return fsm, recorder


def _fire(fsm: Fsm, event: Event) -> None:
    code = {Event.RCR_MINUS: Code.CONFNAK, Event.RXR: Code.ECHOREQ}.get(event, 0)
    fsm.event(event, 100.0, 7, b"\x01\x02\x03\x04", code)


@pytest.mark.parametrize(
    ("state", "event", "actions", "target"),
    CELLS,
    ids=[f"{s.name}-{e.value}" for s, e, _, _ in CELLS],
)
def test_rfc1661_cell(
    state: State, event: Event, actions: tuple[str, ...] | None, target: State | None
) -> None:
    fsm, recorder = _machine(state)
    if actions is None:
        with pytest.raises(FsmError):
            _fire(fsm, event)
        assert fsm.state is state
        return
    _fire(fsm, event)
    assert fsm.state is target
    # irc and zrc are not visible as packets: check them through the restart counter
    visible = [a for a in actions if a not in ("irc", "zrc")]
    assert recorder.log == visible
    sends = sum(a in ("scr", "str") for a in actions)
    if "irc" in actions:
        maximum = (
            CONFIG.max_terminate
            if target in (State.CLOSING, State.STOPPING)
            else (CONFIG.max_configure)
        )
        assert fsm.restart_count == maximum - sends
    elif "zrc" in actions:
        assert fsm.restart_count == 0
        assert fsm.deadline == 100.0 + CONFIG.restart_timer
    else:
        assert fsm.restart_count == START_COUNT - sends


def test_every_state_and_event_is_transcribed() -> None:
    assert len(CELLS) == len(State) * len(Event)
    assert {(s, e) for s, e, _, _ in CELLS} == {(s, e) for s in State for e in Event}


def test_restart_timer_runs_only_where_rfc_says() -> None:
    """RFC 1661 4.6: the timer runs in Closing, Stopping, Req-Sent, Ack-Rcvd, Ack-Sent."""
    for state, event, actions, target in CELLS:
        if actions is None:
            continue
        fsm, _ = _machine(state)
        fsm.deadline = 50.0
        _fire(fsm, event)
        running = target in (
            State.CLOSING,
            State.STOPPING,
            State.REQ_SENT,
            State.ACK_RCVD,
            State.ACK_SENT,
        )
        if not running:
            assert fsm.deadline is None, (state, event)


@given(st.sampled_from(list(State)), st.lists(st.sampled_from(list(Event)), max_size=30))
def test_any_event_sequence_leaves_a_valid_state(start: State, events: list[Event]) -> None:
    fsm, _ = _machine(start)
    for event in events:
        before = fsm.state
        try:
            _fire(fsm, event)
        except FsmError as exc:
            assert exc.state is before
            assert fsm.state is before
        assert isinstance(fsm.state, State)


def test_timeouts_count_down_to_tlf() -> None:
    """Max-Configure Configure-Requests, then TO- and This-Layer-Finished."""
    fsm, recorder = _machine(State.INITIAL)
    fsm.up(0.0)
    fsm.open(0.0)
    now = 0.0
    while fsm.deadline is not None:
        now = fsm.deadline
        fsm.handle_timer(now)
    assert recorder.log.count("scr") == CONFIG.max_configure
    assert recorder.log[-1] == "tlf"
    assert fsm.state is State.STOPPED
    assert now == pytest.approx(CONFIG.max_configure * CONFIG.restart_timer)


def test_terminate_gives_up_after_max_terminate() -> None:
    fsm, recorder = _machine(State.OPENED)
    fsm.close(0.0)
    while fsm.deadline is not None:
        fsm.handle_timer(fsm.deadline)
    assert recorder.log == ["tld"] + ["str"] * CONFIG.max_terminate + ["tlf"]
    assert fsm.state is State.CLOSED
