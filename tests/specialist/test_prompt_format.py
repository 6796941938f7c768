import pytest

from specialist.errors import SpecialistError
from specialist.prompt_format import Example, TaskPrompt, check_supported, fit_prompt, render_prompt, render_response


def test_tk_instruct_layout_is_exact():
    prompt = TaskPrompt(
        definition="Classify the review. ",
        examples=(
            Example(input="good film", output="POS"),
            Example(input="bad film", output="NEG"),
            Example(input="x", output="y"),
        ),
        num_examples=2,
    )
    assert prompt.render("so-so film") == (
        "Definition: Classify the review.\n\n"
        "Positive Example 1 -\nInput: good film\nOutput: POS\n\n"
        "Positive Example 2 -\nInput: bad film\nOutput: NEG\n\n"
        "Now complete the following example -\nInput: so-so film\nOutput:"
    )


def test_generalist_record_has_no_examples_and_may_omit_input():
    assert render_prompt("Name three colors.", "") == "Definition: Name three colors.\n\nOutput:"
    assert render_prompt("Translate.", "hola") == "Definition: Translate.\n\nInput: hola\nOutput:"
    assert render_response("red, blue ") == " red, blue"


def test_fit_prompt_drops_demonstrations_before_giving_up():
    prompt = TaskPrompt(
        definition="d", examples=(Example(input="a " * 50, output="b"), Example(input="c", output="d")), num_examples=2
    )
    count_words = lambda s: len(s.split())  # noqa: E731
    full = prompt.render("x")
    assert fit_prompt(prompt, "x", count_words, 10_000) == full
    shorter = fit_prompt(prompt, "x", count_words, 20)
    assert shorter == prompt.render("x", 0) and "Positive Example" not in shorter
    assert fit_prompt(prompt, "x " * 100, count_words, 20) is None


def test_unknown_format_version_is_refused():
    check_supported("tk-instruct", 1)
    with pytest.raises(SpecialistError, match="not supported"):
        check_supported("tk-instruct", 99)


def test_shared_prefix_stops_before_the_instance_input_whatever_it_contains():
    from specialist.prompt_format import Example, TaskPrompt, shared_prefix

    prompt = TaskPrompt(definition="Say it.", examples=(Example(input="a", output="b"),), num_examples=1)
    assert shared_prefix(prompt.render("x\nInput: y")) == shared_prefix(prompt.render("z"))
    assert shared_prefix(prompt.render("z")).endswith("Now complete the following example -\n")
    bare = TaskPrompt(definition="Say it.", num_examples=0)
    assert shared_prefix(bare.render("x\nInput: y")) == "Definition: Say it.\n\n"
    assert shared_prefix("a raw prompt") == ""


def test_stop_rule_cuts_where_the_frame_would_begin_a_new_line():
    from specialist.prompt_format import FRAME_STOPS, cut_at_frame, first_stop, stop_rule

    # The base model answers, then runs on into another example of the frame: scored and served on the answer.
    assert cut_at_frame("Negative\n\nOutput: Positive\n\nInput: more") == ("Negative", True)
    assert cut_at_frame(" NEG\nInput: a dull film\nOutput: NEG") == (" NEG", True)
    assert cut_at_frame("POS\n\nPositive Example 3 -\nInput: x") == ("POS", True)
    for marker in ("Input:", "Output:", "Positive Example", "Negative Example", "Now complete", "Definition:"):
        assert cut_at_frame(f"yes\n{marker} and on") == ("yes", True)
    assert set(stop_rule()["markers"]) == set(FRAME_STOPS) and stop_rule()["name"] == "frame-markers"
    # The client's own stop strings cut too, whichever comes first.
    assert cut_at_frame("abc STOP def\nInput:", ("STOP",)) == ("abc ", True) and first_stop("abc", ("x",)) is None


def test_stop_rule_keeps_multi_line_answers_whole():
    from specialist.prompt_format import cut_at_frame

    # A multi-line reference (a poem, a list, a paragraph break) is not a new section of the frame: kept.
    answer = "Roses are red,\nviolets are blue.\n\n- Input: two lines\n- Output of the mill: high\nOutputs: none"
    assert cut_at_frame(answer) == (answer, False)
    assert cut_at_frame("Step 1: mix.\nStep 2: bake.\n") == ("Step 1: mix.\nStep 2: bake.\n", False)


def test_streams_hold_back_what_may_become_a_frame_marker():
    from specialist.prompt_format import FRAME_STOPS, stop_prefix_len

    assert stop_prefix_len("NEG\n", FRAME_STOPS) == 1 and stop_prefix_len("NEG\n\n", FRAME_STOPS) == 2
    assert stop_prefix_len("NEG\nOut", FRAME_STOPS) == 4
    assert stop_prefix_len("NEG\nOx", FRAME_STOPS) == 0


def test_a_marker_begun_when_the_budget_ran_out_is_dropped_at_the_end():
    from specialist.prompt_format import cut_at_frame

    # max_new_tokens ended the row inside "\n\nInput:": the frame had begun again, so it is not the answer.
    for text in ("NEG\n\nInput", "NEG\n\nIn", "NEG\n", "NEG\nPositive Ex"):
        assert cut_at_frame(text, final=True) == ("NEG", False)
        assert cut_at_frame(text) == (text, False)  # mid-generation: it may still become something else
    for text in ("two\nlines", "ends with Out", "NEG\n\nInputs are"):
        assert cut_at_frame(text, final=True) == (text, False)
    assert cut_at_frame("NEG STO", ("STOP",), final=True) == ("NEG STO", False)  # a client's partial stop is text
