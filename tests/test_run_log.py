"""fastgan.train.run_log alone: metrics records and their file, the sample grid's
conditions and labels, and the pictures a run directory gets."""

import json
from types import SimpleNamespace

import pytest
import torch

from fastgan.train import run_log


def test_metrics_record_has_r1_only_with_the_penalty():
    with_r1 = run_log.metrics_record(7, 0.5, 1.5, 0.25, steps_per_s=4.0, images_per_step=96)
    assert with_r1 == {"step": 7, "d_loss": 0.5, "g_loss": 1.5, "r1": 0.25, "steps_per_s": 4.0, "images_per_s": 384.0}
    assert "r1" not in run_log.metrics_record(7, 0.5, 1.5, None, steps_per_s=4.0, images_per_step=96)


def test_trim_keeps_records_up_to_the_resumed_step(tmp_path):
    assert run_log.trim_metrics(tmp_path, 3) is None  # no metrics file yet
    records = [run_log.metrics_record(s, s / 10, -s / 10, None, 1.0, 8) for s in range(1, 6)]
    for record in records:
        run_log.append_metrics(tmp_path, record)
    assert [json.loads(line) for line in (tmp_path / run_log.METRICS_FILE).read_text().splitlines()] == records
    kept = run_log.trim_metrics(tmp_path, 3)
    assert kept == records[:3]
    assert [json.loads(line) for line in (tmp_path / run_log.METRICS_FILE).read_text().splitlines()] == records[:3]


def labelled(n_classes, is_image, names=None):
    data = SimpleNamespace(cond=torch.arange(40) % n_classes, cond_names=names, is_image=is_image)
    return data, SimpleNamespace(cond_kind="label", cond_size=n_classes)


def test_grid_rows_are_classes_capped_by_kind_of_data():
    rows, labels = run_log.grid_conditions(*labelled(3, True, ["a", "b", "c"]), "cpu")
    assert rows.tolist() == [0, 1, 2] and labels == ["a", "b", "c"]
    rows, labels = run_log.grid_conditions(*labelled(40, True), "cpu")
    assert rows.tolist() == list(range(run_log.MAX_GRID_ROWS)) and labels[-1] == str(run_log.MAX_GRID_ROWS - 1)
    rows, _ = run_log.grid_conditions(*labelled(100, False), "cpu")
    assert len(rows) == run_log.MAX_PLOT_GROUPS


def test_grid_rows_of_users_and_attributes_are_the_first_distinct_ones():
    users = SimpleNamespace(cond=torch.tensor([5, 5, 2, 9, 2, 1, 3, 4, 6, 7, 8, 0]))
    rows, labels = run_log.grid_conditions(users, SimpleNamespace(cond_kind="user"), "cpu")
    assert rows.tolist() == [5, 2, 9, 1, 3, 4, 6, 7] and labels[:2] == ["user 5", "user 2"]
    attrs = SimpleNamespace(cond=torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]),
                            cond_names=["smiling", "young", "hat"])
    rows, labels = run_log.grid_conditions(attrs, SimpleNamespace(cond_kind="attributes"), "cpu")
    assert rows.tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]] and labels == ["smiling+hat", "(none)"]
    none = run_log.grid_conditions(SimpleNamespace(cond=None), SimpleNamespace(cond_kind="none"), "cpu")
    assert none == (None, None)


def test_attribute_labels_are_values_when_not_binary_and_cut_at_24_characters():
    assert run_log.describe_attributes(torch.tensor([0.5, 2.0]), ["a", "b"]) == "0.5,2"
    long = run_log.describe_attributes(torch.ones(6), ["attribute_%d" % i for i in range(6)])
    assert long == "attribute_0+attribute..." and len(long) == 24


@pytest.mark.parametrize("history", [[], [{"step": 1, "d_loss": 1.0, "g_loss": 2.0}]])
def test_write_pictures_writes_the_grid_a_copy_per_step_and_the_loss_curve(tmp_path, history):
    samples = torch.rand(2, 3, 1, 8, 8)
    run_log.write_pictures(tmp_path, 7, samples, ["a", "b"], SimpleNamespace(), history)
    grid = (tmp_path / "samples.png").read_bytes()
    assert grid[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "samples" / "step_000007.png").read_bytes() == grid
    assert (tmp_path / "losses.png").exists() == bool(history)
