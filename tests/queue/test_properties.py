"""Property: any sequence of put/get/delete/truncate behaves like an ordered list."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TAGS = ["a", "b"]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.binary(max_size=16), st.sampled_from(TAGS)),
        st.tuples(
            st.just("get"),
            st.integers(1, 3),
            st.booleans(),
            st.sampled_from([None, *TAGS]),
        ),
        st.tuples(st.just("delete"), st.integers(0, 8)),
        st.tuples(st.just("truncate"), st.integers(0, 8)),
    ),
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=ops)
def test_any_sequence_of_operations_behaves_like_an_ordered_list(
    make_queue: Any, arun: Any, script: list[tuple[Any, ...]]
) -> None:
    async def scenario() -> None:
        model: list[tuple[int, bytes, str]] = []  # (index, data, tag), oldest first
        last = 0
        async with make_queue() as q:
            for op in script:
                if op[0] == "put":
                    index, _ = await q.put(op[1], {"t": op[2]})
                    assert index > last
                    last = index
                    model.append((index, op[1], op[2]))
                elif op[0] == "get":
                    _, length, delete, tag = op
                    tags = {} if tag is None else {"t": tag}
                    got = await q.get(
                        index=0, length=length, timeout=0, auto_delete=delete, tags=tags
                    )
                    want = [m for m in model if tag is None or m[2] == tag][:length]
                    assert [(r.index, r.data, r.tags["t"]) for r in got] == want
                    if delete:
                        model = [m for m in model if m not in want]
                elif op[0] == "delete":
                    target = model[op[1]][0] if op[1] < len(model) else last + 1
                    removed = await q.delete([target])
                    assert removed == ([target] if op[1] < len(model) else [])
                    model = [m for m in model if m[0] != target]
                else:
                    cut = model[op[1]][0] if op[1] < len(model) else last + 1
                    assert await q.truncate(cut) == sum(m[0] < cut for m in model)
                    model = [m for m in model if m[0] >= cut]
                attrs = await q.attributes()
                assert attrs["stream.length"] == str(len(model))

    arun(scenario())
