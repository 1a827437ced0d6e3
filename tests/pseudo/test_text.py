"""Query simplification with spaCy: a table of sentences, the 3,720-sentence agreement bar, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.pseudo.text import TextError, simplification_agreement, simplify

PSVL_TEST_FILE = Path(__file__).resolve().parents[2] / "data" / "psvl" / "charades_sta_test_pos_original_simple_sent.json"


@pytest.fixture(scope="session")
def nlp():
    """The spaCy pipeline, loaded once per test session (spaCy and its model are dependencies:
    a failure to load is a failure, not a skip)."""
    from zeroground.pseudo.text import load_nlp

    return load_nlp()


TABLE = [
    # sentence -> verbs (sentence order) then nouns (sentence order), lemmatised; no "be"
    ("person turn a light on.", ["turn", "person", "light"]),
    ("person flipped the light switch near the door.", ["flip", "person", "switch", "door"]),
    ("a person is putting a picture onto the wall.", ["put", "person", "picture", "wall"]),
    ("person runs to the window to look out.", ["run", "look", "person", "window"]),
    ("a person stands in the bathroom holding a glass.", ["stand", "hold", "person", "bathroom", "glass"]),
    ("person they throw their clothes on to a nearby desk.", ["throw", "person", "clothe", "desk"]),
    ("there is a person sitting on a bed.", ["sit", "person", "bed"]),
    ("a person walks in a doorway drinking some coffee.", ["walk", "drink", "person", "doorway", "coffee"]),
    ("person takes some medicine.", ["take", "person", "medicine"]),
    ("The person closes the cabinet doors.", ["close", "person", "cabinet", "door"]),
    ("Person Eats A Sandwich.", ["eat", "person", "sandwich"]),
    ("the person is doing their homework as the person eats.", ["do", "eat", "person", "homework", "person"]),
]


def test_simplification_table(nlp) -> None:
    got = simplify([s for s, _ in TABLE])
    for (sentence, expected), tokens in zip(TABLE, got):
        assert tokens == expected, sentence


def test_agreement_with_psvl_test_file_is_at_least_90_percent(nlp) -> None:
    items = json.loads(PSVL_TEST_FILE.read_text())
    assert len(items) == 3720
    agreement, bad = simplification_agreement(items)
    assert agreement >= 0.97, f"agreement {agreement:.4f}; first disagreements: {bad[:5]}"


def test_errors(nlp) -> None:
    with pytest.raises(TextError, match="sentence 1 is empty"):
        simplify(["a person sits.", "   "])
    with pytest.raises(TextError, match="list of sentences"):
        simplify("a person sits.")  # type: ignore[arg-type]


def test_cli_sentence_and_file(nlp, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["simplify", "a person opens the door."])
    assert res.exit_code == 0 and res.output.strip() == "open person door"
    f = tmp_path / "q.txt"
    f.write_text("a person opens the door.\n\nperson sits on a chair.\n")
    res = runner.invoke(app, ["simplify", "--file", str(f)])
    assert res.exit_code == 0
    assert res.output.splitlines() == ["open person door", "sit person chair"]
    res = runner.invoke(app, ["simplify"])
    assert res.exit_code == 2 and "exactly one of" in res.output
    res = runner.invoke(app, ["simplify", "--file", str(tmp_path / "nope.txt")])
    assert res.exit_code == 2 and "not found" in res.output
