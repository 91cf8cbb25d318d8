"""Prints the corpus's counts at the end of the run, so CI's log carries them."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from .test_corpus import SUMMARY

    if not SUMMARY:
        return
    terminalreporter.section("bad-input corpus")
    total = {}
    for family, counts in sorted(SUMMARY.items()):
        terminalreporter.write_line(f"{family:12} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for key, value in counts.items():
            if key != "slowest_s":
                total[key] = total.get(key, 0) + value
    terminalreporter.write_line(f"{'all':12} " + ", ".join(f"{k} {v}" for k, v in total.items()))
