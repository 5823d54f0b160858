"""Tests for icdpo_eval.method.retrieval (random / bm25 tail / bm25 + SBERT re-rank)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from icdpo_eval.method import retrieval as R
from icdpo_eval.method.retrieval import make_retriever

TOPICS = [
    "How do I change the oil in my car engine?",
    "What is the capital city of Australia?",
    "Can you recommend a good science fiction novel?",
    "How many legs does a spider have?",
    "What should I pack for a camping trip in the mountains?",
    "How can I improve my chess opening repertoire?",
    "Why is the sky blue during the day?",
    "What are some tips for learning to play the guitar?",
    "How do vaccines train the immune system?",
    "What is the best way to clean a leather jacket?",
    "How do I set up a freshwater aquarium for tropical fish?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How can I stop my dog from barking at the mailman?",
    "What is the difference between stocks and bonds?",
    "How do I write a cover letter for a software job?",
    "What causes earthquakes along tectonic plates?",
    "How do I knit a wool scarf for winter?",
    "What are good exercises for lower back pain?",
    "How do solar panels convert sunlight into electricity?",
    "What is the plot of Shakespeare's Hamlet?",
    "How can I get better sleep at night?",
    "What is the tallest mountain in Africa?",
    "How do I repot a cactus without getting pricked?",
    "What languages are spoken in Switzerland?",
    "How do I file my taxes as a freelancer?",
    "What are the rules of ice hockey?",
    "How do bees make honey in the hive?",
    "How can I teach my child to ride a bicycle?",
    "What is the speed of light in a vacuum?",
    "How do I remove a red wine stain from a carpet?",
]


def hh(*turns: str) -> str:
    """An HH-RLHF style prompt: alternating Human/Assistant turns, ending with 'Assistant:'."""
    text = ""
    for i, turn in enumerate(turns):
        text += f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {turn}"
    return text + "\n\nAssistant:"


def demo(prompt: str, i: int) -> dict:
    return {"prompt": prompt, "chosen": " Sure.", "rejected": " No.", "id": f"d{i}"}


def topic_pool() -> list[dict]:
    return [demo(hh("Hi there.", "Hello! How can I help?", t), i) for i, t in enumerate(TOPICS)]


BREAD_QUERY = hh(
    "I have a question about my kitchen.", "Sure, go ahead.", "How do I bake sourdough bread at home?"
)


@pytest.fixture
def bread_pool() -> tuple[list[dict], int, int]:
    """30 topics plus two demos whose ENDING is about bread (their start is about something else)."""
    pool = topic_pool()
    close = len(pool)
    pool.append(
        demo(
            hh(
                "My car broke down yesterday.",
                "Sorry to hear that.",
                "Anyway, how do I bake sourdough bread?",
            ),
            close,
        )
    )
    far = len(pool)
    pool.append(demo(hh("I like painting.", "Nice hobby!", "Any tips for sourdough bread?"), far))
    return pool, close, far


@pytest.fixture(scope="module")
def tok(base_engine: Any) -> Any:
    """The embedded base model's tokenizer (its twin holds the real one), the engine's, as the icdpo model passes
    it: BM25 sees subword tokens of the evaluated model's tokenizer."""
    return base_engine.tok


def test_bm25_indexes_case_sensitive_subword_tails_of_the_dialogue(tok: Any) -> None:
    tails = R.SubwordTails(tok)
    query = "\n\nHuman: Don't PANIC, human!\n\nAssistant:"
    assert R.retrieval_text(query) == "Human: Don't PANIC, human!"  # the dialogue, without the final Assistant:
    got = tails([R.retrieval_text(query)], 3)[0]
    assert got == tok.convert_ids_to_tokens(tok(R.retrieval_text(query), add_special_tokens=False).input_ids)[-3:]
    assert tails(["PANIC"], 5) != tails(["panic"], 5)  # case-sensitive, as released


def test_bm25_finds_bread_endings_most_similar_last(bread_pool: tuple[list[dict], int, int], tok: Any) -> None:
    pool, close, far = bread_pool
    got = make_retriever("bm25", pool, tokenizer=tok).retrieve(BREAD_QUERY, 2)
    assert got == [far, close]


def test_bm25_matches_rank_bm25_get_scores(bread_pool: tuple[list[dict], int, int], tok: Any) -> None:
    pool, _, _ = bread_pool
    r = make_retriever("bm25", pool, bm25_window=12, tokenizer=tok)
    assert isinstance(r, R.BM25Retriever)
    for q in [BREAD_QUERY, pool[3]["prompt"], "nothing matches zzz", BREAD_QUERY + " bread bread"]:
        expected = r.index.bm25.get_scores(R.SubwordTails(tok)([R.retrieval_text(q)], 12)[0])
        np.testing.assert_allclose(r.bm25_scores([q])[0], expected)


def test_bm25_window_picks_by_the_tail(tok: Any) -> None:
    """The paper's point: the ending matters. A demo sharing the query's long beginning but not its
    ending wins under full-text BM25; the tail window picks the demo with the matching ending."""
    prefix = " ".join(f"garden{i} tomato{i}" for i in range(50))  # 100 words
    other = " ".join(f"ocean{i} whale{i}" for i in range(50))
    # endings longer than the window (HH last turns usually are), so the window sees only them
    bread = (
        "how long should I proof sourdough bread dough before baking it in the oven tonight, "
        "and should the loaf rest in the fridge overnight first or can it go straight in"
    )
    truck = (
        "which engine oil grade should I use for my old pickup truck in winter, "
        "and how often do I need to change the filter and check the coolant level"
    )
    query = hh(prefix, "Okay.", bread)
    pool = topic_pool()
    same_start, same_end = len(pool), len(pool) + 1
    pool += [demo(hh(prefix, "Okay.", truck), same_start), demo(hh(other, "Okay.", bread), same_end)]

    full_text = make_retriever("bm25", pool, bm25_window=100_000, tokenizer=tok)
    assert full_text.retrieve(query, 1) == [same_start]
    assert make_retriever("bm25", pool, bm25_window=30, tokenizer=tok).retrieve(query, 1) == [same_end]


def test_bm25_window_separates_same_bag_of_words(tok: Any) -> None:
    """Two demos with the same words in a different order: full-text BM25 cannot tell them apart."""
    bread = "Help me bake crusty sourdough bread with a starter and rye flour please"
    cars = " ".join(f"engine{i} wheel{i}" for i in range(30))
    pool = topic_pool()
    bread_last, cars_last = len(pool), len(pool) + 1
    pool += [demo(hh(cars, "Okay.", bread), bread_last), demo(hh(bread, "Okay.", cars), cars_last)]
    query = hh("Something unrelated.", "Okay.", "How do I bake crusty sourdough bread with rye flour?")

    full = make_retriever("bm25", pool, bm25_window=100_000, tokenizer=tok)
    assert isinstance(full, R.BM25Retriever)
    scores = full.bm25_scores([query])[0]
    assert scores[bread_last] == pytest.approx(scores[cars_last])
    assert make_retriever("bm25", pool, tokenizer=tok).retrieve(query, 1) == [bread_last]


def test_bm25_ties_broken_by_index(tok: Any) -> None:
    pool = topic_pool()
    r = make_retriever("bm25", pool, tokenizer=tok)
    # no token overlap with any demo: all scores tie at 0 -> lowest indices, index 0 most similar (last)
    assert r.retrieve("ÆØÅ ÞÐ", 3) == [2, 1, 0]


def test_random_deterministic_and_batch_independent() -> None:
    pool = topic_pool()
    r = make_retriever("random", pool, seed=7)
    queries = [f"query number {i}" for i in range(10)]
    singles = [r.retrieve(q, 3) for q in queries]
    assert r.retrieve_many(queries, 3) == singles
    assert r.retrieve_many(queries[::-1], 3) == singles[::-1]
    assert make_retriever("random", pool, seed=7).retrieve_many(queries[3:5], 3) == singles[3:5]
    for got in singles:
        assert len(set(got)) == 3 and all(0 <= i < len(pool) for i in got)
    assert len({tuple(s) for s in singles}) > 1  # depends on the query
    other_seed = make_retriever("random", pool, seed=8).retrieve_many(queries, 3)
    assert other_seed != singles


@pytest.mark.parametrize("kind", ["random", "bm25"])
def test_exclude_drops_the_query_itself(kind: str, bread_pool: tuple[list[dict], int, int], tok: Any) -> None:
    pool, _, _ = bread_pool
    self_idx = len(pool)
    pool = pool + [demo(BREAD_QUERY, self_idx)]
    r = make_retriever(kind, pool, tokenizer=tok)
    if kind == "bm25":
        assert r.retrieve(BREAD_QUERY, 2)[-1] == self_idx  # leaks without exclude
    for _ in range(3):
        assert self_idx not in r.retrieve(BREAD_QUERY, len(pool) - 1, exclude=BREAD_QUERY)
    assert self_idx not in r.retrieve(BREAD_QUERY, 5, exclude=f"d{self_idx}")  # by id
    batched = r.retrieve_many([BREAD_QUERY, "x"], 5, exclude=[BREAD_QUERY, None])
    assert self_idx not in batched[0]
    with pytest.raises(ValueError, match="remain after excluding"):
        r.retrieve(BREAD_QUERY, len(pool), exclude=BREAD_QUERY)


def test_errors_are_clear(tok: Any) -> None:
    pool = topic_pool()
    with pytest.raises(ValueError, match="random, bm25, bm25_sbert"):
        make_retriever("dense", pool)
    with pytest.raises(ValueError, match="empty"):
        make_retriever("bm25", [], tokenizer=tok)
    with pytest.raises(ValueError, match="holds only 30"):
        make_retriever("bm25", pool, tokenizer=tok).retrieve("q", 31)
    with pytest.raises(ValueError, match="holds only 30"):
        make_retriever("random", pool).retrieve_many(["q"], 31)
    with pytest.raises(ValueError, match="'prompt'"):
        make_retriever("bm25", [{"chosen": "x"}], tokenizer=tok)
    assert make_retriever("bm25", pool, tokenizer=tok).retrieve("q", 0) == []


# ---------------------------------------------------------------- SBERT (embedded:sbert: all-MiniLM-L6-v2's twin)

TIRE_QUERY = hh("I need some help.", "Of course.", "How do I fix a flat tire on my bicycle?")
PARAPHRASE = hh("Hello.", "Hi!", "Can you explain how to mend a punctured tyre on a bike?")
DISTRACTOR = hh("Hello.", "Hi!", "How do I fix my flat mood when I tire of my job?")


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_bm25_sbert_reranks_the_bm25_candidates_by_sbert_similarity(tmp_cache: Path, tok: Any) -> None:
    """BM25 proposes ``bm25_top`` candidates, SBERT cosine similarity orders them (most similar last). The SBERT is
    the default ``embedded:sbert`` (its random twin here: the ORDER it gives is arbitrary, so the test derives the
    expected ranking from its embeddings and checks that the re-ranking moves demos, and keeps one out)."""
    pool = topic_pool()
    para, dist = len(pool), len(pool) + 1
    pool += [demo(PARAPHRASE, para), demo(DISTRACTOR, dist)]

    bm25 = make_retriever("bm25", pool, tokenizer=tok)
    bm25_rank = bm25.retrieve(TIRE_QUERY, 20)[::-1]  # best first
    assert bm25_rank[0] == dist  # lexical overlap wins under BM25 alone
    assert para in bm25_rank[1:]  # but the paraphrase is among the 20 BM25 candidates
    r = make_retriever("bm25_sbert", pool, device="cpu", tokenizer=tok)
    assert isinstance(r, R.BM25SbertRetriever)
    # the pool's embeddings are those of its dialogues (without the final "Assistant:"), unit norm
    pool_emb = r.embeddings(range(len(pool)))
    np.testing.assert_allclose(pool_emb, R._encode(r.model, [R.retrieval_text(d["prompt"]) for d in pool]),
                               atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pool_emb, axis=1), 1.0, atol=1e-5)
    sims = pool_emb @ R._encode(r.model, [R.retrieval_text(TIRE_QUERY)])[0]
    by_sbert = sorted(bm25_rank, key=lambda i: -sims[i])  # stable: ties keep the BM25 order
    assert by_sbert[:3] != bm25_rank[:3], "SBERT must reorder the BM25 candidates for this test to show anything"
    assert r.retrieve(TIRE_QUERY, 20) == by_sbert[::-1]
    assert r.retrieve(TIRE_QUERY, 3) == by_sbert[:3][::-1]
    # candidates come from the BM25 stage only: a demo more similar than the k-th but outside BM25's top is out
    outside = next(i for i in np.argsort(-sims) if i not in bm25_rank)
    k = 1 + sum(sims[i] > sims[outside] for i in bm25_rank)
    assert k <= 5, "this test needs a demo outside the BM25 candidates among the most similar"
    assert r.retrieve(TIRE_QUERY, k) == by_sbert[:k][::-1] and outside not in r.retrieve(TIRE_QUERY, k)
    # with bm25_top=1 the re-ranker sees BM25's top candidate only, widened to k when k is larger
    narrow = make_retriever("bm25_sbert", pool, bm25_top=1, device="cpu", tokenizer=tok)
    assert narrow.retrieve(TIRE_QUERY, 1) == [dist]
    assert set(bm25_rank[:2]) != set(np.argsort(-sims)[:2].tolist()), "the 2 most similar must not be BM25's top 2"
    assert narrow.retrieve(TIRE_QUERY, 2) == sorted(bm25_rank[:2], key=lambda i: -sims[i])[::-1]
    assert r.retrieve_many([TIRE_QUERY, BREAD_QUERY], 2)[0] == r.retrieve(TIRE_QUERY, 2)
    assert para not in r.retrieve(PARAPHRASE, 3, exclude=PARAPHRASE)


def test_sbert_embeds_only_bm25_candidates_once_and_on_disk(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                            tok: Any) -> None:
    """SBERT encodes the pool prompts BM25 proposes, each once: a second retriever (a rerun) reads them from the disk
    store, another pool sharing the prompts too; only the queries are encoded again. Retrieval is the same as with
    the whole pool embedded up front."""
    pool = topic_pool()
    calls: list[int] = []
    real_encode = R._encode

    def counting_encode(model: Any, texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return real_encode(model, texts)

    monkeypatch.setattr(R, "_encode", counting_encode)
    first = make_retriever("bm25_sbert", pool, device="cpu", tokenizer=tok)
    assert isinstance(first, R.BM25SbertRetriever)
    assert calls == []  # nothing embedded before a query asks
    got = first.retrieve(TOPICS[3], 2)
    assert calls == [first.top, 1] and first.encoded == first.top < len(pool)  # BM25's 20 candidates, the query
    assert list((tmp_cache / "retrieval").glob("*.sqlite"))

    calls.clear()
    second = make_retriever("bm25_sbert", pool, device="cpu", tokenizer=tok)
    assert second.retrieve(TOPICS[3], 2) == got and calls == [1] and second.encoded == 0  # from disk
    # the same as re-ranking with every pool prompt embedded up front (the released code's way)
    every = real_encode(second.model, second.texts)
    cand = second._ranked([TOPICS[3]], second.top, [None])[0]
    sims = every[cand] @ real_encode(second.model, [R.retrieval_text(TOPICS[3])])[0]
    assert got == [cand[i] for i in np.argsort(-sims, kind="stable")[:2]][::-1]
    np.testing.assert_allclose(second.embeddings(cand), every[cand], atol=1e-6)

    calls.clear()
    other = make_retriever("bm25_sbert", pool[:-1], device="cpu", tokenizer=tok)  # another pool sharing prompts
    other.retrieve(TOPICS[3], 2)
    proposed = other._ranked([TOPICS[3]], other.top, [None])[0]
    new = {pool[i]["prompt"] for i in proposed} - {pool[i]["prompt"] for i in cand}
    assert other.encoded == len(new) < other.top  # only candidates no earlier retriever had embedded
    assert calls == [len(new), 1] if new else calls == [1]
