"""Small pieces of benchmarks/run_device.sh that are easier in Python (and testable on a
CPU): the environment line of stages.jsonl and the correctness stage's JSON.

    python benchmarks/device_run.py environment
    python benchmarks/device_run.py correctness JUNIT_XML PYTEST_LOG > correctness.json

The correctness JSON comes from pytest's junit XML, which pytest writes when it ends
normally or is interrupted (the script stops a stage with SIGINT at its time limit);
when there is no readable XML (killed harder), from the per-test lines of its -v log,
so that a sweep cut short still reports what ran.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET

OUTCOMES = ("passed", "failure", "error", "skipped")
# pytest -v result lines, with or without xdist's "[gwN] [ 10%]" prefix.
_LOG_LINE = re.compile(r"(?:\[gw\d+\]\s+\[\s*\d+%\]\s+)?(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+::\S+)"
                       r"|^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)")
_FROM_LOG = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failure", "ERROR": "error", "SKIPPED": "skipped",
             "XFAIL": "skipped"}


def from_junit(path: str) -> list[dict]:
    cases = []
    for case in ET.parse(path).iter("testcase"):
        if case.get("name") is None:  # the test an interrupt stopped: a bare <testcase/>
            continue
        outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        record = {"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                  "seconds": float(case.get("time", 0))}
        # What a test recorded with pytest's record_property (e.g. step times).
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if properties:
            record["properties"] = properties
        cases.append(record)
    return cases


def from_log(path: str) -> list[dict]:
    cases = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = _LOG_LINE.search(line.strip())
            if m:
                word, test = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
                cases[test] = {"test": test, "outcome": _FROM_LOG[word], "seconds": None}
    return list(cases.values())


def correctness(xml_path: str, log_path: str) -> dict:
    source = "junit"
    try:
        cases = from_junit(xml_path)
    except (OSError, ET.ParseError):
        source = "log"
        try:
            cases = from_log(log_path)
        except OSError:
            cases = []
    counts = {o: sum(c["outcome"] == o for c in cases) for o in OUTCOMES}
    return {"source": source, "counts": counts, "cases": cases}


def environment() -> dict:
    import torch
    import triton

    env = {"stage": "environment", "torch": torch.__version__, "triton": triton.__version__,
           "cuda": torch.cuda.is_available()}
    if env["cuda"]:
        props = torch.cuda.get_device_properties(0)
        env.update(device=props.name, capability=list(torch.cuda.get_device_capability()),
                   sms=props.multi_processor_count)
    return env


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["environment"]:
        print(json.dumps(environment()))
    elif argv[:1] == ["correctness"] and len(argv) == 3:
        print(json.dumps(correctness(argv[1], argv[2]), indent=1))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
