"""Progress bars are one setting for a whole call (dermsynth.progress), not a flag threaded
through every signature: the command line sets it from --json, workers and stage tasks turn it
off, and a step can quiet itself inside another."""

from __future__ import annotations

from dermsynth.cli.common import handles_errors
from dermsynth.experiments.graph import Task, run_graph
from dermsynth.experiments.task_payloads import Payload
from dermsynth.progress import bars_shown, progress_bar, progress_bars


class Nothing(Payload):
    pass


def reports_bars(payload: Nothing) -> bool:
    return bars_shown()


def test_the_setting_holds_for_everything_inside_and_nests():
    with progress_bars(True):
        assert bars_shown() and not progress_bar(range(3)).disable
        assert progress_bar(range(3), min_items=200).disable  # too short to be worth a bar
        with progress_bars(False):
            assert not bars_shown() and progress_bar(range(3)).disable
        assert bars_shown()


def test_stage_tasks_draw_no_bars_whatever_the_caller_set(tmp_path):
    with progress_bars(True):
        assert run_graph([Task("t", "clean", reports_bars, Nothing())], tmp_path) == {"t": False}


def test_a_command_shows_bars_unless_it_prints_json():
    seen = []

    @handles_errors
    def command(as_json: bool = False):
        seen.append(bars_shown())

    command(as_json=False)
    command(as_json=True)
    assert seen == [True, False]

