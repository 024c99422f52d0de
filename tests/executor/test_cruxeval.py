"""All 400 CRUXEval programs run with their given input and produce the given output."""

from __future__ import annotations

from executor_support import cruxeval_rows

from azr.executor import Executor, Job, Status


def test_every_program_reproduces_its_output(ex: Executor) -> None:
    rows = cruxeval_rows()
    assert len(rows) == 400
    jobs = [Job(r["code"], r["input"], expected=r["output"]) for r in rows]
    results = ex.run_batch(jobs)
    failures = [
        (r["id"], x.status, x.error, x.value, r["output"])
        for r, x in zip(rows, results, strict=True)
        if not (x.status is Status.OK and x.matched is True)
    ]
    assert failures == []


def test_a_changed_output_does_not_match(ex: Executor) -> None:
    rows = cruxeval_rows()[:100]
    # Wrapping the gold output in a list changes its value whatever its type.
    jobs = [Job(r["code"], r["input"], expected=f"[{r['output']}]") for r in rows]
    assert all(x.matched is False for x in ex.run_batch(jobs))
