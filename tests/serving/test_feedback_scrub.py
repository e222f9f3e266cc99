"""Feedback reasons are de-identified before storage, whatever store_raw says (issue 12, item 6)."""

import pytest

from serving.store import Store


@pytest.mark.parametrize("store_raw", [False, True])
def test_feedback_reason_is_scrubbed(tmp_path, store_raw):
    store = Store(f"sqlite:///{tmp_path / 'audit.db'}", store_raw=store_raw)
    store.add_feedback(consult_id=None, outcome="override",
                       reason="Spoke with Dr. Okafor and daughter Karen Whitfield on March 3, 2024; call 617-555-0100")
    [row] = _all(store)
    for identifier in ("Okafor", "Karen", "Whitfield", "March 3, 2024", "617-555-0100"):
        assert identifier not in row.reason
    assert "Spoke with" in row.reason


def _all(store):
    from sqlalchemy import select

    from serving.store import Feedback

    with store._session() as s:
        return list(s.scalars(select(Feedback)))
