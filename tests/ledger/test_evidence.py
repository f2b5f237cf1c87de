"""Evidence payloads have one encoding each: reading back what was logged gives the same bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from ledger.evidence import EvidenceError, PlannedRewind, SchemaRederived

hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def schema_checks(draw: st.DrawFn) -> SchemaRederived:
    before = draw(hex64)
    changed = draw(st.booleans())
    after = draw(hex64.filter(lambda h: h != before)) if changed else before
    rewinds = ()
    changes: tuple[str, ...] = ()
    if changed:
        changes = tuple(draw(st.lists(st.text("abc 0123:->", min_size=1, max_size=20), max_size=3)))
        shards = draw(st.lists(st.integers(0, 50), unique=True, max_size=4))
        rewinds = tuple(
            PlannedRewind(s, 0, None, draw(st.none() | hex64), tuple(sorted(draw(st.sets(hex64, max_size=2)))))
            for s in sorted(shards)
        )
    return SchemaRederived(
        run_id=draw(st.none() | st.just("run_0123456789abcdef")),
        rule="forget/schema/v1",
        min_subjects=draw(st.integers(1, 20)),
        records=draw(st.integers(0, 10**7)),
        previous_sha256=before,
        schema_sha256=after,
        changed=changed,
        changes=changes,
        rewinds=rewinds,
    )


@given(check=schema_checks())
def test_a_schema_check_reads_back_to_the_same_bytes(check: SchemaRederived) -> None:
    payload = check.to_payload()
    again = SchemaRederived.from_payload(payload)
    assert again == check
    assert canonical_json(again.to_payload()) == canonical_json(payload)


def test_an_unchanged_schema_check_with_empty_changes_is_another_encoding_and_refused() -> None:
    digest = "ab" * 32
    check = SchemaRederived(None, "forget/schema/v1", 5, 10, digest, digest, False)
    payload = {**check.to_payload(), "changes": [], "rewinds": []}
    with pytest.raises(EvidenceError, match="of an unchanged schema names no changes or rewinds"):
        SchemaRederived.from_payload(payload)
