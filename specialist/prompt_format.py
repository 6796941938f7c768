"""The one prompt format. Training, evaluation and serving all render prompts here.

Tk-Instruct style (Wang et al., 2022), the standard for Super-NaturalInstructions:

    Definition: <task definition>

    Positive Example 1 -
    Input: <input>
    Output: <output>

    Now complete the following example -
    Input: <input>
    Output:

Generalist records use the same frame: the instruction is the definition, there are no examples, and an
empty input is left out. The prompt ends with "Output:"; the response is " <output>" + EOS. Training encodes
prompt and response separately, and serving encodes only the prompt, so token boundaries match.

The name and version below are stored in every adapter manifest; a change to the rendered text must bump
the version, and later stages refuse a manifest whose format they do not know.

The format also owns its **stop rule**: a generation ends where the frame would begin a new line of its own
(`Input:`, `Output:`, `Positive Example`, `Negative Example`, `Now complete`, `Definition:` after a newline), as
well as at EOS. A model that answers "Negative" and runs on into "\n\nOutput: ..." is scored and served on
"Negative", whatever the model (base, candidate, champion). Only those markers cut: an answer may span lines.
Of the 765,131 references in the 790 SuperNI tasks here, 2,469 contain a newline and none contains a marker,
so the rule never cuts a SuperNI reference. (Generalist records may: 38 of the 51,924 cleaned-Alpaca answers
contain "\nInput:" or "\nOutput:". They are trained on whole; only generations are cut.)
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from specialist.errors import SpecialistError

PROMPT_FORMAT_NAME = "tk-instruct"
PROMPT_FORMAT_VERSION = 1
DEFAULT_NUM_EXAMPLES = 2
# The frame's fixed pieces: rendering writes them, and `is_rendered` / `shared_prefix` look for them.
_DEFINITION = "Definition: "
_QUERY = "Now complete the following example -\n"
_INPUT = "Input: "
_OUTPUT = "Output:"
_POSITIVE = "Positive Example"
_QUERY_START = "Now complete"

STOP_RULE_NAME = "frame-markers"
STOP_RULE_VERSION = 1
# A newline followed by a piece that opens a line of the frame; the blank-line forms too, so the cut also drops
# the blank line before the marker. Streams hold back text that could still become one of these, so what a
# client sees is always the text before the cut.
_MARKERS = (_INPUT.strip(), _OUTPUT, _POSITIVE, "Negative Example", _QUERY_START, _DEFINITION.strip())
FRAME_STOPS: tuple[str, ...] = tuple(newlines + marker for marker in _MARKERS for newlines in ("\n\n", "\n"))


class Example(BaseModel):
    """A demonstration shown in the prompt."""

    model_config = ConfigDict(frozen=True)
    input: str
    output: str


class TaskPrompt(BaseModel):
    """Everything needed to render a prompt for one task, minus the instance input.

    Stored in the adapter manifest so that eval and serving render exactly what training saw.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    format_name: str = PROMPT_FORMAT_NAME
    format_version: int = PROMPT_FORMAT_VERSION
    definition: str
    examples: tuple[Example, ...] = ()
    num_examples: int = DEFAULT_NUM_EXAMPLES

    def render(self, input: str, num_examples: int | None = None) -> str:
        check_supported(self.format_name, self.format_version)
        k = self.num_examples if num_examples is None else num_examples
        return render_prompt(self.definition, input, self.examples[:k])


def render_prompt(definition: str, input: str, examples: tuple[Example, ...] | list[Example] = ()) -> str:
    parts = [f"{_DEFINITION}{definition.strip()}\n\n"]
    for i, ex in enumerate(examples, 1):
        parts.append(f"{_POSITIVE} {i} -\n{_INPUT}{ex.input.strip()}\n{_OUTPUT} {ex.output.strip()}\n\n")
    if examples:
        parts.append(_QUERY)
    if input.strip():
        parts.append(f"{_INPUT}{input.strip()}\n")
    parts.append(_OUTPUT)
    return "".join(parts)


def stop_rule() -> dict[str, str | int]:
    """The rule's identity, recorded in evaluation reports and gate decisions."""
    return {"name": STOP_RULE_NAME, "version": STOP_RULE_VERSION, "markers": list(FRAME_STOPS)}


def first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest of `stops` begins in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def stop_prefix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that begins some stop string (it may yet become one): what a
    stream holds back."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if stop.startswith(text[-k:]):
                best = k
                break
    return best


def cut_at_frame(text: str, extra_stops: tuple[str, ...] = (), final: bool = False) -> tuple[str, bool]:
    """(text before the first frame marker or extra stop string, whether one was found).

    `final`: the generation is over (its token budget ran out), so a tail that begins a frame marker -- the
    model had started "\n\nInput" when the budget ended -- is dropped too. Only the frame's own markers are
    dropped that way; a partial client stop string is text like any other."""
    cut = first_stop(text, (*FRAME_STOPS, *extra_stops))
    if cut is not None:
        return text[:cut], True
    return (text[: len(text) - stop_prefix_len(text, FRAME_STOPS)] if final else text), False


def render_response(output: str) -> str:
    """The target text after the prompt (EOS is appended by the tokenizing step)."""
    return " " + output.strip()


def check_supported(name: str, version: int) -> None:
    if (name, version) != (PROMPT_FORMAT_NAME, PROMPT_FORMAT_VERSION):
        raise SpecialistError(
            f"prompt format {name} v{version} is not supported by this version "
            f"(it renders {PROMPT_FORMAT_NAME} v{PROMPT_FORMAT_VERSION})",
            "retrain the adapter or install the version of specialist-factory that trained it",
        )


def fit_prompt(prompt: TaskPrompt, input: str, count_tokens: Callable[[str], int], budget: int) -> str | None:
    """The richest rendering that fits `budget` tokens: drop demonstrations from the end until it fits.

    Returns None when even the bare prompt is too long. Training, eval and serving share this rule.
    """
    for k in range(min(prompt.num_examples, len(prompt.examples)), -1, -1):
        text = prompt.render(input, k)
        if count_tokens(text) <= budget:
            return text
    return None


def is_rendered(text: str) -> bool:
    """Whether `text` is already a full prompt in this format (e.g. forwarded by a router), not a task input."""
    return text.startswith(_DEFINITION) and text.rstrip().endswith(_OUTPUT)


def shared_prefix(prompt: str) -> str:
    """The part of a rendered prompt that every instance of its task shares: definition and demonstrations,
    up to the instance's own "Input:" line. Decoders cache its keys/values once per adapter (a raw prompt in
    another format shares nothing and gets "")."""
    if not is_rendered(prompt):
        return ""
    # The first marker, not the last: an instance input that contains "\nInput: " must not move into the prefix.
    cut = prompt.find(_QUERY)
    if cut >= 0:
        return prompt[: cut + len(_QUERY)]
    cut = prompt.find("\n" + _INPUT)
    return prompt[: cut + 1] if cut >= 0 else prompt[: -len(_OUTPUT)]
