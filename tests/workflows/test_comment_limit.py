"""A decision's comment is bounded by the engine's check of the decision, with a Chinese message; nothing of a refused
decision is stored (issue 14, item 11)."""
from __future__ import annotations

from sqlalchemy import func, select

from engine.messages import MESSAGES
from engine.storage.models import ApplicationAction
from engine.workflows.routing import MAX_COMMENT
from tests.support import OTHER_DISTRICT_CLASS, unit_id
from tests.workflows.support import application_id, proof, transfer_form


def test_comment_over_the_limit__refused_with_its_length_nothing_stored(world) -> None:  # type: ignore[no-untyped-def]
    w = world("reg", "reg_in")
    reg, reg_in = w.login("reg"), w.login("reg_in")
    app = application_id(reg.start("transfer", w.student(), transfer_form(unit_id(w.state, OTHER_DISTRICT_CLASS)), proof()))
    with w.state.db.read() as s:
        actions = s.scalar(select(func.count()).select_from(ApplicationAction))
    long = "意" * (MAX_COMMENT + 1)
    refused = reg_in.decide(app, "reject", comment=long)
    assert refused.status_code == 422
    assert MESSAGES["wf_comment_too_long"].format(limit=MAX_COMMENT, length=MAX_COMMENT + 1) in refused.text
    with w.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ApplicationAction)) == actions
    assert reg_in.decide(app, "reject", comment="意" * MAX_COMMENT).status_code == 303
