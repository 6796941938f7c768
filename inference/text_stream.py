"""One generation's text as it grows: incremental detokenising, stop strings, and what is safe to stream yet.

Every serving backend ends its generations here, so the stop rule is applied one way: the local engine feeds
token ids (`add_token`, decoded with its tokenizer), a remote engine feeds text pieces (`add_text`). Both get
back the piece that may be shown to the client now:

- the text is cut at the first stop string -- the client's own (`stops`) or the prompt format's frame markers
  (`end_markers`, `FRAME_STOPS`) -- and the stream is then `stopped`;
- a tail that could still become a stop string is held back, and so is a character whose bytes have not all
  arrived yet (byte-level tokens decode a partial character as U+FFFD), so a client never sees either;
- at the end (`finish`) what was held back is released, except a partial frame marker: the model had begun
  a new line of the frame when its budget ran out ("NEG\\n\\nInput" is "NEG"). A partial client stop string
  is text like any other.

The streamed pieces always add up to the final `text`.
"""

from __future__ import annotations

from specialist.prompt_format import first_stop, stop_prefix_len

_PARTIAL_CHAR = "\ufffd"  # what a tokenizer decodes the first bytes of a multi-byte character to


class TextStream:
    def __init__(self, stops: tuple[str, ...] = (), end_markers: tuple[str, ...] = (), tokenizer=None):
        """`tokenizer` is needed only to feed token ids (`add_token`)."""
        self.tokenizer = tokenizer
        self.end_markers = tuple(end_markers)
        self.stops = (*stops, *end_markers)
        self.ids: list[int] = []  # token ids fed so far (add_token)
        self.text = ""  # the text so far, cut at the first stop
        self.stopped = False  # ended by a stop string or end marker
        self.stop_sequence: str | None = None  # the client's stop string that ended it (not an end marker)
        self._client_stops = tuple(stops)
        self._emitted = 0  # characters already handed out

    def add_token(self, token: int) -> str:
        """Record a new token id; returns the text that can be streamed now ('' while held back)."""
        self.ids.append(token)
        # The whole text again, not the token alone: a token may complete a character begun by the previous ones.
        self._update(self.tokenizer.decode(self.ids, skip_special_tokens=True))
        return self._release(hold_partial_char=True)

    def add_text(self, piece: str) -> str:
        """Record a new piece of text (an engine that detokenises itself); returns the text streamable now."""
        self._update(self.text + piece)
        return self._release()

    def finish(self) -> str:
        """The generation is over: the rest of the text (a partial end marker at the very end dropped)."""
        if not self.stopped:  # a partial end marker at the very end is the frame beginning again: not the answer
            self.text = self.text[: len(self.text) - stop_prefix_len(self.text, self.end_markers)]
        return self._release(final=True)

    def finish_reason(self, ran_out: bool) -> str:
        """'length' when the token budget ended it (`ran_out`) before any stop did, else 'stop' (EOS or a stop)."""
        return "length" if ran_out and not self.stopped else "stop"

    def _update(self, text: str) -> None:
        if self.stopped:  # nothing after a stop counts
            return
        cut = first_stop(text, self.stops)
        if cut is not None:
            matched = next((s for s in self._client_stops if text.startswith(s, cut)), None)
            text, self.stopped, self.stop_sequence = text[:cut], True, matched
        self.text = text

    def _release(self, hold_partial_char: bool = False, final: bool = False) -> str:
        end = len(self.text)
        if not final and not self.stopped:
            # Hold back what might still change: a partly decoded character, or the start of a stop string.
            if hold_partial_char and self.text.endswith(_PARTIAL_CHAR):
                return ""
            end -= stop_prefix_len(self.text, self.stops)
        piece = self.text[self._emitted : end]
        if piece:
            self._emitted = end
        return piece
