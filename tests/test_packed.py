"""The compact byte forms of what the dedup shuffles carry (dedup/packed.py) give back exactly what went in."""
from hypothesis import given, strategies as st

from dedup.exact import fingerprint_groups, _gathered
from core.gather import chunk
from dedup.minhash import Entry, Sketch
from dedup.packed import pack_entry, pack_member, pack_sketch, unpack_entry, unpack_member, unpack_sketch

ids = st.one_of(st.binary(min_size=8, max_size=8).map(bytes.hex), st.text(max_size=40))
karmas = st.integers(min_value=-(1 << 62), max_value=1 << 62)


@given(ids, karmas)
def test_a_member_comes_back_whole(doc_id, karma):
    assert unpack_member(pack_member(doc_id, karma)) == (doc_id, karma)


@given(ids, karmas, st.binary(max_size=200), st.binary(max_size=600), st.text(max_size=80))
def test_an_entry_comes_back_whole(doc_id, karma, keys, sig, ref):
    e = Entry(doc_id, karma, keys, sig, ref)
    assert unpack_entry(pack_entry(e)) == e
    assert unpack_sketch(pack_sketch(e)) == e


def test_ids_the_pipeline_makes_take_eight_bytes_and_upper_case_stays_text():
    assert len(pack_member("0123456789abcdef", 5)) == 1 + 8 + 1
    assert unpack_member(pack_member("0123456789ABCDEF", 5)) == ("0123456789ABCDEF", 5)   # not folded to lower
    sk = Sketch("a", 3, "f" * 32, b"")
    assert unpack_sketch(pack_sketch(sk)) == sk               # anything not an Entry travels pickled


def test_a_gathered_key_gives_back_its_fingerprint_groups():
    a, b, c = (Entry(i, k, b"", b"", "") for i, k in (("0000000000000001", 3), ("0000000000000002", 9), ("x", 1)))
    records = [_gathered(kv)[1] for kv in (("fp1", a), ("fp2", b), ("fp1", c))]
    groups = fingerprint_groups([chunk(b"".join(records[:2])), chunk(records[2])])   # split over two chunks
    assert [fp for fp, _ in groups] == ["fp1", "fp2"]
    assert sorted(groups[0][1]) == sorted([a, c]) and groups[1][1] == [b]
    # the members' order follows their bytes, not the chunks': every run picks survivors among ties alike
    assert fingerprint_groups([chunk(records[2]), chunk(b"".join(records[:2]))]) == groups
