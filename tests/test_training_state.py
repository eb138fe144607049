"""TrainState, the one record --resume continues from: what an epoch does to it, and last.pt holding it as
plain data and tensors."""
from pathlib import Path

import torch

from ferkit.training.schedule import Plateau
from ferkit.training.state import TrainState
from synthetic import learnable_dataset, tiny_config as tiny


def test_an_epoch_is_best_when_its_score_beats_every_earlier_one_and_stale_counts_the_others():
    state = TrainState(Plateau(2, 0.1))
    verdicts = [state.finish_epoch({"val_accuracy": a}, "val_accuracy") for a in (0.3, 0.5, 0.5, 0.4, 0.6)]
    assert verdicts == [True, True, False, False, True]
    assert (state.epoch, state.best, state.stale) == (5, 0.6, 0)
    state.finish_epoch({"val_accuracy": 0.2}, "val_accuracy")
    assert state.stale == 1
    # --swa before its average starts: the row has no score, so the epoch neither improves nor goes stale
    assert not state.finish_epoch({"val_accuracy": 0.9}, "swa_val_accuracy")
    assert (state.epoch, state.stale, len(state.history)) == (7, 1, 7)


def test_the_record_survives_a_weights_only_round_trip(tmp_path):
    plateau = Plateau(3, 0.5, scale=0.25, best_loss=0.7, stale=2)
    state = TrainState(plateau, epoch=4, best=0.61, stale=1, history=[{"epoch": 1, "lr": 0.1}],
                       optimizer={"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": []},
                       ema={"decay": 0.9, "updates": 12, "weights": {"w": torch.arange(3.0)}},
                       torch_rng=torch.get_rng_state())
    torch.save(state.to_dict(), tmp_path / "state.pt")
    back = TrainState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True), Plateau(3, 0.5))
    assert (back.epoch, back.best, back.stale, back.history) == (4, 0.61, 1, [{"epoch": 1, "lr": 0.1}])
    assert (back.plateau.scale, back.plateau.best_loss, back.plateau.stale) == (0.25, 0.7, 2)
    assert torch.equal(back.optimizer["state"][0]["momentum_buffer"], torch.ones(3))
    assert back.ema["updates"] == 12 and torch.equal(back.ema["weights"]["w"], torch.arange(3.0))
    assert back.swa is None and torch.equal(back.torch_rng, state.torch_rng)


def test_a_last_pt_from_before_the_record_still_resumes():
    # The flat layout: "epoch" was the index of the last epoch run, the plateau's state two loose numbers.
    old = {"optimizer": {}, "epoch": 2, "best": 0.5, "stale": 1, "plateau_scale": 0.1, "best_val_loss": 0.8,
           "history": [{}, {}, {}], "torch_rng": torch.get_rng_state(), "config": {}}
    state = TrainState.from_dict(old, Plateau(2, 0.1))
    assert (state.epoch, state.best, state.stale) == (3, 0.5, 1)
    assert (state.plateau.scale, state.plateau.best_loss) == (0.1, 0.8)


def test_last_pt_holds_the_record_of_the_run(tmp_path):
    from ferkit.training.loop import train

    summary = train(tiny(tmp_path, epochs=2, limit_steps=2, ema=0.9, schedule="plateau"),
                    learnable_dataset(n_train=64, n_val=14, size=24))
    saved = torch.load(Path(summary["run_dir"]) / "last.pt", weights_only=True)["train_state"]
    state = TrainState.from_dict(saved, Plateau(2, 0.1))
    assert state.epoch == 2 and len(state.history) == 2
    assert state.best == summary["best_val_accuracy"]
    assert state.plateau.best_loss == min(row["val_loss"] for row in state.history)
    assert state.ema["updates"] == 2 * 2 and state.swa is None
    assert saved["config"]["ema"] == 0.9  # the run's config travels with it
