import itertools

import pytest
from transitions import MachineError

from posguard.cli.engine import main as cli_main
from posguard.engine.chart import (
    CHART,
    KINDS,
    STATES,
    IllegalTransition,
    build_machine,
    render_dot,
    render_table,
)
from tests.engine.conftest import card


def test_compiled_table_agrees_with_the_transitions_machine_everywhere():
    events = sorted({t.event for t in CHART.transitions})
    checked = 0
    for kind in KINDS:
        machine = build_machine(kind)
        for state, event in itertools.product(CHART.states_of(kind), events):
            machine.set_state(state)
            expected = CHART.table.get((kind, state, event))
            try:
                machine.trigger(event)
                got = machine.state
            except (MachineError, AttributeError):
                got = None
            assert got == expected, (kind, state, event)
            checked += 1
    assert checked > 1000


def test_every_state_is_reachable_from_created_for_some_kind():
    reachable = set()
    for kind in KINDS:
        frontier, seen = ["created"], {"created"}
        while frontier:
            s = frontier.pop()
            for e in CHART.events_from(kind, s):
                d = CHART.next_state(kind, s, e)
                if d not in seen:
                    seen.add(d)
                    frontier.append(d)
        reachable |= seen
    assert reachable == set(STATES)


def test_illegal_event_names_the_transaction_state_and_event():
    with pytest.raises(IllegalTransition) as err:
        CHART.next_state("sale", "declined", "void", txn_id="TERM0001-00000007")
    text = str(err.value)
    assert "TERM0001-00000007" in text and "'declined'" in text and "'void'" in text and "final" in text


def test_voiding_a_declined_sale_is_refused_and_journaled(engine, host):
    host.then("decline:51")
    declined = engine.sale(card(), 500)
    with pytest.raises(IllegalTransition):
        engine.void(declined.txn_id)
    refused = [h for h in engine.journal.history(declined.txn_id) if not h["accepted"]]
    assert [(r["from_state"], r["event"]) for r in refused] == [("declined", "void")]
    assert [w.mti for w in host.wire] == ["0200"]  # nothing was sent for the refused void


def test_chart_prints_as_a_table_and_as_graphviz(capsys):
    table = render_table("sale")
    assert "request_journaled  send" in table and "reversal_pending" in table
    dot = render_dot("void")
    assert dot.startswith("digraph") and '"void.approved" -> "void.reversal_pending" [label="reverse_approved"]' in dot
    assert cli_main(["chart", "--dot", "--kind", "sale"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
