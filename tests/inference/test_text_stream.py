"""The one text stream every backend ends its generations with: stops, held-back text, the frame's stop rule."""

import pytest

from inference.text_stream import TextStream
from specialist.prompt_format import FRAME_STOPS


class _ByteTokenizer:
    """Every token is one UTF-8 byte, decoded as byte-level tokenizers do: a partial character is U+FFFD."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def _feed_tokens(stream: TextStream, ids: list[int]) -> list[str]:
    pieces = []
    for token in ids:
        pieces.append(stream.add_token(token))
        if stream.stopped:
            break
    return [*pieces, stream.finish()]


def _feed_text(stream: TextStream, texts: list[str]) -> list[str]:
    pieces = []
    for text in texts:
        pieces.append(stream.add_text(text))
        if stream.stopped:
            break
    return [*pieces, stream.finish()]


def test_the_local_stream_ends_by_the_frame_rule_and_streams_only_the_answer(tiny_model_dir):
    from specialist.base_models import load_tokenizer, resolve_base_model

    tokenizer = load_tokenizer(resolve_base_model(str(tiny_model_dir)))
    for text, budget, expected, reason in (
        (" NEG\n\nOutput: POS", 64, " NEG", "stop"),
        (" NEG\n\nInput", None, " NEG", "length"),
    ):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        stream = TextStream(end_markers=FRAME_STOPS, tokenizer=tokenizer)
        pieces = _feed_tokens(stream, ids)
        ran_out = len(stream.ids) >= (budget or len(ids))
        assert stream.text == expected == "".join(pieces) and stream.finish_reason(ran_out) == reason


@pytest.mark.parametrize("mode", ["tokens", "text"])
def test_a_stop_string_split_across_pieces_is_never_shown(mode):
    parts = ["The ans", "wer is S", "T", "OP and more"]
    stream = TextStream(stops=("STOP",), tokenizer=_ByteTokenizer())
    if mode == "tokens":
        pieces = _feed_tokens(stream, list("".join(parts).encode()))
    else:
        pieces = _feed_text(stream, parts)
    assert stream.stopped and stream.text == "The answer is " == "".join(pieces)
    assert not any("S" in p for p in pieces), "the start of the stop string was held back, never streamed"
    assert stream.finish_reason(ran_out=True) == "stop"  # a stop ends it, whatever the budget


def test_multi_byte_characters_arriving_in_pieces_are_streamed_whole():
    text = " café ☕ naïve"
    ids = list(text.encode())
    assert len(ids) > len(text), "the characters must really arrive over several tokens"
    stream = TextStream(end_markers=FRAME_STOPS, tokenizer=_ByteTokenizer())
    pieces = _feed_tokens(stream, ids)
    assert "".join(pieces) == text == stream.text
    assert not any("\ufffd" in p for p in pieces), "a partly decoded character is held back"
    assert stream.finish_reason(ran_out=False) == "stop"


def test_the_frame_marker_stop_rule():
    # A marker cuts the answer; the blank line before it goes too.
    stream = TextStream(end_markers=FRAME_STOPS)
    pieces = _feed_text(stream, [" NEG", "\n", "\n", "Output", ":", " POS"])
    assert pieces == [" NEG", "", "", "", "", ""]  # stopped at "Output:" (" POS" is never read), nothing left over
    assert stream.stopped and stream.text == " NEG"
    # A marker begun when the budget ran out is dropped at the end, and the stream ends by length.
    stream = TextStream(end_markers=FRAME_STOPS)
    assert "".join(_feed_text(stream, [" NEG", "\n", "\n", "Input"])) == " NEG" == stream.text
    assert not stream.stopped and stream.finish_reason(ran_out=True) == "length"
    # A newline that never became a marker is part of the answer: held back, then released.
    stream = TextStream(end_markers=FRAME_STOPS)
    pieces = _feed_text(stream, [" line one", "\n", "line two"])
    assert pieces[1] == "" and "".join(pieces) == " line one\nline two" == stream.text
    # Only frame markers are dropped at the end: a partial client stop string is text like any other.
    stream = TextStream(stops=("zz",), end_markers=FRAME_STOPS)
    assert "".join(_feed_text(stream, [" answer", " z"])) == " answer z" == stream.text


def test_text_after_a_stop_inside_one_piece_is_dropped():
    stream = TextStream(stops=("###",))
    assert stream.add_text("yes### no") == "yes" and stream.stopped
    assert stream.finish() == "" and stream.text == "yes"
