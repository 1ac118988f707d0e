"""A runner for tests: the real runner's plan, journal and resume bookkeeping, with no data,
training or workers. Shared by the tests of shards and of resuming."""

from __future__ import annotations

from typing import Any

from harness.api import TrainedModel
from harness.planner import CellKey
from harness.report.synthetic import cell_record, model_record
from harness.runner import Runner


class DryRunner(Runner):
    """Journals a synthetic model record per model and a synthetic cell record per cell."""

    def _load(self, dataset_name):
        return None, None

    def _prepare_model(self, key, train, test, journaled, backends):
        if not journaled:
            self.journal.append(model_record(key.dataset, key.variant, key.model))
        eval_path = self.run_dir / "work" / f"{key.slug()}.npz"
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        eval_path.touch()
        trained = TrainedModel(key.dataset, key.model, key.variant, eval_path, eval_path, "k")
        return trained, eval_path

    def _measure(self, cell: CellKey, trained, eval_path) -> dict[str, Any]:
        key = cell.model_key
        return cell_record(key.dataset, key.variant, cell.backend, cell.device, key.model)
