"""Why an in-order run's held-out curve rises: the plays of a corpus and where a run reads in them."""
from charrnn.study import rise

CORPUS = ("front matter\n\nHAMLET, PRINCE OF DENMARK\n\nby William Shakespeare\n\n" + "x" * 100
          + "\nTHE TRAGEDY OF KING LEAR\n\nby William Shakespeare\n\n" + "y" * 100
          + "\nTWELFTH NIGHT; OR, WHAT YOU WILL\n\nby William Shakespeare\n\n" + "z" * 100)


def test_plays_get_short_titles_in_corpus_order():
    titles = rise.play_titles(CORPUS)
    assert [t for _, t in titles] == ["Hamlet", "King Lear", "Twelfth Night"]
    assert [p for p, _ in titles] == sorted(p for p, _ in titles)
    assert rise.play_titles("a text without plays") == []


def test_the_play_at_a_position_is_the_last_one_begun_there():
    titles = rise.play_titles(CORPUS)
    assert rise.play_at(titles, 0) == "front matter"
    assert rise.play_at(titles, titles[1][0]) == "King Lear"
    assert rise.play_at(titles, len(CORPUS) - 1) == "Twelfth Night"


def test_an_in_order_run_reads_the_plays_in_order_and_wraps_at_the_end_of_a_pass():
    n = len(CORPUS)  # one update reads one character here (seq_length 1)
    assert rise.plays_read(CORPUS, 1, 0, n - 1) == ["front matter", "Hamlet", "King Lear", "Twelfth Night"]
    start = rise.play_titles(CORPUS)[2][0]
    assert rise.plays_read(CORPUS, 1, start, n + 5) == ["Twelfth Night", "front matter"]  # the next pass
    assert rise.reading_rows(CORPUS, [0, n + start], 1) == [["0", "1", "front matter"],
                                                           [f"{n + start:,}", "2", "Twelfth Night"]]
