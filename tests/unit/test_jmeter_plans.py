"""The JMeter plans: written by jmeter/plans.py, well-formed, every knob a property."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLANS = sorted((ROOT / "jmeter").glob("*.jmx"))


def test_the_committed_plans_are_what_plans_py_writes():
    check = [sys.executable, "jmeter/plans.py", "--check"]
    result = subprocess.run(check, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_a_plan_is_well_formed_and_configurable(path):
    tree = ET.parse(path)
    text = path.read_text()
    for knob in ("host", "port", "threads", "rampup", "duration", "think_ms", "data"):
        assert f"__P({knob}," in text, f"{path.name}: no ${{__P({knob},...)}} property"
    groups = tree.findall(".//ThreadGroup")
    assert len(groups) == 1
    assert groups[0].find("boolProp[@name='ThreadGroup.scheduler']").text == "true"
    # Only elements JMeter 2.13 has (no JSON extractor), and every sampler checks its status.
    tags = {element.tag for element in tree.iter()}
    assert "JSONPostProcessor" not in tags
    samplers = tree.findall(".//HTTPSamplerProxy")
    assert samplers
    assert len(tree.findall(".//ResponseAssertion")) == len(samplers)


def test_the_journey_checks_out_with_an_idempotency_key_and_pays_the_order_it_made():
    text = (ROOT / "jmeter" / "journey.jmx").read_text()
    assert "Idempotency-Key" in text and "__UUID()" in text
    assert re.search(r"/api/orders/\$\{order_id\}/payments/", text)
