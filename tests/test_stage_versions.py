"""A stage's code cannot change without its version (or a record made with evidence) changing too."""

from gemrepro.cache.stages import read_record
from gemrepro.studies import stages


def test_every_stage_code_matches_its_record():
    problems = stages.stale_stages(read_record())
    assert not problems, "\n".join(problems)


def test_a_change_of_a_stages_code_is_flagged(fake_stage):
    recorded = stages.current_record()
    assert stages.stale_stages(recorded) == []
    fake_stage.edit()
    (problem,) = stages.stale_stages(recorded)
    assert problem.startswith("fake: its code changed at version 1")
    fake_stage.bump()
    (problem,) = stages.stale_stages(recorded)
    assert problem.startswith("fake: version 1 -> 2")
