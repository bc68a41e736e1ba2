"""The short fault-injection run (tests/faults.py has the driver and the checks; ``python -m tests.faults
--faults 60`` is the long run): SIGKILLs of the sequencer, the engine and the gateways under load,
then every acknowledged order journaled exactly once, no fill twice, every client's view the engine's,
balances conserved, and the engine's state equal to a replay of the whole journal."""

from __future__ import annotations

from tests.faults import FaultRun, fault_exchange

FAULTS = 6
SEED = 20261125


def test_orders_survive_processes_killed_at_random_moments():
    with fault_exchange() as exchange:
        run = FaultRun(exchange, traders=4, seed=SEED)
        try:
            run.run(FAULTS)
            result = run.check()
        finally:
            run.close()
    assert sum(result["faults"].values()) == FAULTS
    assert result["acknowledged"] == result["orders"] == result["journaled_once"] > 0
    assert result["conserved"]
