"""VectorIndex: exact and IVF bases, copy-on-write edits, compaction and persistence."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from knowledge_base import IndexLoadError, Passage, VectorIndex
from knowledge_base.index import DELTA_FILE, INDEX_FILE, METADATA_FILE

DIM = 32
PER_ARTICLE = 4


def unit(rows: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised.astype(np.float32)


def corpus(n: int, seed: int = 0) -> tuple[list[Passage], np.ndarray]:
    """``n`` passages, ``PER_ARTICLE`` per article, with clustered unit vectors."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(n // 20, 1), DIM)))
    vectors = unit(centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, DIM)))
    passages = [
        Passage(f"art-{i // PER_ARTICLE}", f"T{i // PER_ARTICLE}", None, None, f"p{i}", "section")
        for i in range(n)
    ]
    return passages, vectors


def build(n: int, exact_limit: int, seed: int = 0) -> tuple[VectorIndex, np.ndarray]:
    passages, vectors = corpus(n, seed)
    index = VectorIndex(DIM, "test", "fp", exact_limit=exact_limit, nprobe=64)
    for start in range(0, n, 256):  # in batches, as KnowledgeBase.build adds
        index.add(passages[start : start + 256], vectors[start : start + 256])
    return index, vectors


def texts(results: list[tuple[Passage, float]]) -> list[str]:
    return [p.text for p, _ in results]


def brute_force(index: VectorIndex, query: np.ndarray, k: int) -> list[str]:
    matrix = index.vectors(range(len(index)))
    order = np.argsort(-(matrix @ query), kind="stable")[:k]
    return [index.passages[i].text for i in order]


def recall(index: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    hits = [len(set(texts(index.search(q, k))) & set(brute_force(index, q, k))) for q in queries]
    return sum(hits) / (k * len(queries))


@pytest.fixture(scope="module")
def ivf() -> tuple[VectorIndex, np.ndarray]:
    return build(3000, exact_limit=500)


def test_small_index_is_exact_and_large_one_approximate(
    ivf: tuple[VectorIndex, np.ndarray],
) -> None:
    exact, vectors = build(400, exact_limit=500)
    assert not exact.approximate
    query = vectors[7]
    assert texts(exact.search(query, 10)) == brute_force(exact, query, 10)

    index, vectors = ivf
    assert index.approximate and len(index) == 3000
    assert [p.text for p in index.passages[:3]] == ["p0", "p1", "p2"]
    np.testing.assert_allclose(index.vectors([5, 2999]), vectors[[5, 2999]], rtol=1e-6)
    assert recall(index, vectors[:50]) >= 0.9
    results = index.search(vectors[0], 5)
    assert results[0][0].text == "p0"
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)


@pytest.mark.parametrize("size", [400, 3000])
def test_with_changes_replaces_an_article_and_leaves_the_old_index_alone(size: int) -> None:
    index, vectors = build(size, exact_limit=500)
    before = (len(index), index.passages, texts(index.search(vectors[9], 10)))
    replacement = [Passage("art-2", "T2", None, None, "new text", "section")]
    fresh = unit(np.random.default_rng(9).standard_normal((1, DIM)))

    changed = index.with_changes({"art-2"}, replacement, fresh, fingerprint="fp2")

    assert (changed.fingerprint, index.fingerprint) == ("fp2", "fp")
    assert len(changed) == size - PER_ARTICLE + 1
    assert texts(changed.search(fresh[0], 1)) == ["new text"]
    for old in range(8, 12):  # art-2's old passages
        assert f"p{old}" not in texts(changed.search(vectors[old], 20))
    assert changed.passages[-1].text == "new text"
    assert [p.text for p in changed.passages[8:10]] == ["p12", "p13"]
    # An IVF base stores float16: a component is off by up to ~1e-4.
    np.testing.assert_allclose(
        changed.vectors([8, len(changed) - 1]), [vectors[12], fresh[0]], atol=1e-3
    )
    assert (len(index), index.passages, texts(index.search(vectors[9], 10))) == before


def test_edits_chain_and_replace_passages_in_the_delta() -> None:
    index, _ = build(3000, exact_limit=500)
    first = unit(np.ones((1, DIM)))
    second = unit(-np.ones((1, DIM)))
    one = index.with_changes({"art-1"}, [Passage("art-1", "T", None, None, "v1", "section")], first)
    two = one.with_changes({"art-1"}, [Passage("art-1", "T", None, None, "v2", "section")], second)

    assert texts(one.search(first[0], 1)) == ["v1"]
    assert "v1" not in texts(two.search(first[0], 50))
    assert texts(two.search(second[0], 1)) == ["v2"]
    assert two.pending == (1, PER_ARTICLE)
    assert len(two) == 3000 - PER_ARTICLE + 1


@pytest.mark.parametrize("size", [400, 3000])
def test_search_never_returns_tombstoned_passages(size: int) -> None:
    index, vectors = build(size, exact_limit=500)
    removed = {f"art-{a}" for a in range(0, size // PER_ARTICLE, 3)}

    changed = index.with_changes(removed)

    for row in range(0, size, 7):
        results = changed.search(vectors[row], 10)
        assert len(results) == 10
        assert not {p.article_id for p, _ in results} & removed
    assert len(changed.search(vectors[0], size)) == len(changed)
    assert not {p.article_id for p in changed.passages} & removed


def test_add_after_sharing_does_not_touch_the_shared_base() -> None:
    index, vectors = build(3000, exact_limit=500)
    changed = index.with_changes({"art-0"})
    extra = unit(np.ones((1, DIM)))
    index.add([Passage("art-x", "T", None, None, "extra", "section")], extra)

    assert texts(index.search(extra[0], 1)) == ["extra"]
    assert "extra" not in texts(changed.search(extra[0], 5))
    assert len(changed) == 3000 - PER_ARTICLE


@pytest.mark.parametrize(("size", "removed_articles"), [(400, 10), (3000, 10), (3000, 300)])
def test_compaction_keeps_passages_order_vectors_and_results(
    size: int, removed_articles: int
) -> None:
    index, vectors = build(size, exact_limit=500)
    index.delta_limit = 8
    rng = np.random.default_rng(5)
    fresh = unit(rng.standard_normal((12, DIM)))
    new = [Passage(f"new-{i // 3}", "N", None, None, f"n{i}", "section") for i in range(12)]
    removed = {f"art-{a}" for a in range(removed_articles)}
    changed = index.with_changes(removed, new, fresh)
    if changed.approximate:
        assert changed.compaction_due
    else:  # an exact base is compacted on the spot: it costs milliseconds
        assert changed.pending == (0, 0)

    compacted = changed.compacted()

    assert compacted.pending == (0, 0)
    assert not compacted.compaction_due
    assert compacted.passages == changed.passages
    everything = range(len(changed))
    # The delta's float32 vectors become float16 in an IVF base.
    np.testing.assert_allclose(
        compacted.vectors(everything), changed.vectors(everything), atol=1e-3
    )
    queries = np.vstack([fresh, vectors[::97]])
    if compacted.approximate:
        assert recall(compacted, queries) >= 0.9
    else:
        for query in queries:
            assert texts(compacted.search(query, 10)) == texts(changed.search(query, 10))
    assert texts(compacted.search(fresh[4], 1)) == ["n4"]


def test_compaction_of_a_large_enough_exact_base_switches_to_ivf() -> None:
    index, _ = build(480, exact_limit=500)
    passages, vectors = corpus(100, seed=3)
    fresh = [
        Passage(f"x-{p.article_id}", "X", None, None, "x" + p.text, "section") for p in passages
    ]
    changed = index.with_changes((), fresh, vectors)
    assert not changed.approximate

    compacted = changed.compacted()

    assert compacted.approximate and compacted.passages == changed.passages
    assert recall(compacted, vectors[:30]) >= 0.9


@pytest.mark.parametrize("size", [400, 3000])
def test_save_and_load_round_trip_with_delta_and_tombstones(tmp_path: Path, size: int) -> None:
    index, vectors = build(size, exact_limit=500)
    fresh = unit(np.ones((2, DIM)) + np.eye(2, DIM))
    new = [Passage("art-3", "T3", "Head", "head", f"new{i}", "question") for i in range(2)]
    changed = index.with_changes({"art-3", "art-5"}, new, fresh)
    changed.save(tmp_path)

    loaded = VectorIndex.load(tmp_path)

    assert (loaded.dim, loaded.embedder_name, loaded.fingerprint) == (DIM, "test", "fp")
    assert (loaded.approximate, loaded.nprobe, loaded.exact_limit) == (
        changed.approximate,
        64,
        500,
    )
    assert loaded.passages == changed.passages and loaded.pending == changed.pending
    everything = range(len(loaded))
    np.testing.assert_array_equal(loaded.vectors(everything), changed.vectors(everything))
    for query in [*fresh, *vectors[::50]]:
        assert loaded.search(query, 10) == changed.search(query, 10)
    # Further edits and saves of the loaded copy work too.
    again = loaded.with_changes({"art-3"})
    again.save(tmp_path)
    assert VectorIndex.load(tmp_path).passages == again.passages


def test_saving_an_edit_does_not_rewrite_the_unchanged_base(tmp_path: Path) -> None:
    index, _ = build(3000, exact_limit=500)
    index.save(tmp_path)
    written = (tmp_path / INDEX_FILE).stat()

    index.with_changes({"art-1"}).save(tmp_path)

    assert (tmp_path / INDEX_FILE).stat().st_ino == written.st_ino
    assert len(VectorIndex.load(tmp_path)) == 3000 - PER_ARTICLE


def damage_truncate(directory: Path) -> None:
    data = (directory / INDEX_FILE).read_bytes()
    (directory / INDEX_FILE).write_bytes(data[: len(data) // 2])


def damage_delta(directory: Path) -> None:
    (directory / DELTA_FILE).write_bytes(b"\0" * 64)


def damage_tombstone(directory: Path) -> None:
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["tombstones"] = [10**9]
    (directory / METADATA_FILE).write_text(json.dumps(metadata))


def damage_old_format(directory: Path) -> None:
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["format"] = 1
    (directory / METADATA_FILE).write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (damage_truncate, "does not match its metadata"),
        (damage_delta, "delta file does not match"),
        (damage_tombstone, "invalid index"),
        (damage_old_format, "unknown metadata format"),
        (lambda d: (d / DELTA_FILE).unlink(), "cannot read index"),
        (lambda d: (d / METADATA_FILE).write_text("{nope"), "cannot read index"),
    ],
)
@pytest.mark.parametrize("size", [400, 3000])
def test_load_of_damaged_or_mismatched_files_raises(
    tmp_path: Path, damage: object, message: str, size: int
) -> None:
    index, _ = build(size, exact_limit=500)
    index.with_changes({"art-1"}, [], np.zeros((0, DIM), np.float32)).save(tmp_path)
    assert callable(damage)
    damage(tmp_path)

    with pytest.raises(IndexLoadError, match=message):
        VectorIndex.load(tmp_path)


def test_base_from_another_index_is_rejected(tmp_path: Path) -> None:
    build(400, exact_limit=500)[0].save(tmp_path / "a")
    build(400, exact_limit=500, seed=1)[0].save(tmp_path / "b")
    (tmp_path / "a" / INDEX_FILE).write_bytes((tmp_path / "b" / INDEX_FILE).read_bytes())

    with pytest.raises(IndexLoadError, match="does not match its metadata"):
        VectorIndex.load(tmp_path / "a")


def test_vectors_of_the_wrong_shape_are_rejected() -> None:
    index, _ = build(10, exact_limit=500)
    with pytest.raises(ValueError, match="expected vectors of shape"):
        index.with_changes(
            (), [Passage("a", "T", None, None, "x", "section")], np.ones((1, 3), np.float32)
        )


def test_readers_of_the_old_index_are_undisturbed_by_edits_and_compaction() -> None:
    index, vectors = build(3000, exact_limit=500)
    queries = vectors[::150]
    expected = [texts(index.search(q, 10)) for q in queries]
    failures: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for query, want in zip(queries, expected, strict=True):
                if texts(index.search(query, 10)) != want:
                    failures.append("changed")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        current = index
        for step in range(30):
            fresh = unit(np.random.default_rng(step).standard_normal((2, DIM)))
            new = [
                Passage(f"art-{step}", "T", None, None, f"e{step}-{i}", "section") for i in (0, 1)
            ]
            current = current.with_changes({f"art-{step}"}, new, fresh)
        current.compacted()
    finally:
        stop.set()
        for reader in readers:
            reader.join()

    assert failures == []
    assert texts(current.search(fresh[1], 1)) == ["e29-1"]


@pytest.mark.parametrize("size", [400, 3000])
def test_positions_of_an_article_match_the_passages(size: int) -> None:
    index, _ = build(size, exact_limit=500)
    new = [Passage("art-7", "T", None, None, f"n{i}", "section") for i in range(3)]
    changed = index.with_changes({"art-2", "art-7"}, new, unit(np.ones((3, DIM))))
    changed = changed.with_changes({"art-40"}, new[:1], unit(np.ones((1, DIM))))

    for index_ in (index, changed):
        for article in ("art-1", "art-2", "art-7", "art-40", "art-41", "missing"):
            expected = [i for i, p in enumerate(index_.passages) if p.article_id == article]
            assert index_.positions_of(article) == expected
