"""The search tokenizer: accent-folded, case-folded terms, whole words plus a prefix for the last word."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from projectors.search import MAX_TERMS, MIN_TERM, conditions, fold, matches, terms, words

TEXT = st.text(alphabet=st.sampled_from("abcdeéèçñöüßÆ xyz-123,.ŁİK"), max_size=60)


class TestFolding:
    def test_accents_and_case_fold_away(self) -> None:
        """Café, CAFÉ and cafe are one term; ß becomes ss."""
        assert terms("Café") == terms("CAFÉ") == terms("cafe") == ["cafe"]
        assert terms("Große Straße") == ["grosse", "strasse"]

    def test_punctuation_splits_words_and_one_letter_words_are_not_terms(self) -> None:
        """Hyphens and commas separate words; single letters are not stored."""
        assert terms("Main-Street, 12 a") == ["12", "main", "street"]

    @given(TEXT)
    def test_folding_is_idempotent(self, text: str) -> None:
        """Folding folded text changes nothing, so stored terms and query words meet."""
        assert fold(fold(text)) == fold(text)
        assert terms(" ".join(terms(text))) == terms(text)

    @given(st.lists(TEXT, max_size=5))
    def test_terms_are_sorted_distinct_and_bounded(self, texts: list[str]) -> None:
        found = terms(*texts)
        assert found == sorted(set(found))
        assert len(found) <= MAX_TERMS
        assert all(len(t) >= MIN_TERM for t in found)


class TestQueries:
    def test_whole_words_then_a_prefix(self) -> None:
        """All but the last word must be whole terms; the last may be the start of one."""
        assert [(c.op, c.value) for c in conditions("Broken stre")] == [("contains", "broken"), ("prefix", "stre")]
        assert conditions("  ,, ") == ()

    @given(TEXT, st.data())
    @settings(max_examples=200)
    def test_every_document_matches_its_own_words_typed_so_far(self, text: str, data: st.DataObject) -> None:
        """Typing any run of a document's words, the last one cut short, finds the document."""
        own = [w for w in words(text) if len(w) >= MIN_TERM]
        if not own:
            return
        start = data.draw(st.integers(0, len(own) - 1))
        typed = own[start : start + data.draw(st.integers(1, 3))]
        cut = data.draw(st.integers(1, len(typed[-1])))
        assert matches(terms(text), " ".join([*typed[:-1], typed[-1][:cut]]))

    @given(TEXT, TEXT)
    def test_a_whole_word_the_document_lacks_never_matches(self, text: str, other: str) -> None:
        """A query word that is not a term of the document, followed by another word, excludes it."""
        missing = [w for w in words(other) if len(w) >= MIN_TERM and w not in terms(text)]
        if missing:
            assert not matches(terms(text), f"{missing[0]} x")
