"""Best-epoch keeping and early stopping, and that both survive a restart."""

import numpy as np
import pytest
import tensorflow as tf
from vgg_transfer import phases


def tiny_model() -> tf.keras.Model:
    inputs = tf.keras.Input((2,))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))


def feed(callback, model, values):
    for epoch, val_accuracy in values:
        model.get_layer(index=1).set_weights([np.full((2, 1), float(epoch)), np.zeros(1)])
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(
            epoch, {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.4, "val_accuracy": val_accuracy}
        )


def test_patience_stops_and_the_best_epoch_is_kept_across_a_restart(tmp_path, capsys):
    model = tiny_model()
    model.stop_training = False
    state = phases.PhaseState(phase="fine_tuned", epochs=50)
    callback = phases.PhaseCheckpoint(state, str(tmp_path), model, patience=3)
    callback.set_model(model)
    feed(callback, model, [(0, 0.70), (1, 0.90), (2, 0.85), (3, 0.88)])
    assert (state.best_epoch, state.wait, model.stop_training) == (2, 2, False)

    # a restart reads the state back: the patience counter carries on from 2, not from 0
    resumed = phases.load_state(str(tmp_path), "fine_tuned", 50)
    assert (resumed.epochs_done, resumed.best_epoch, resumed.wait) == (4, 2, 2)
    again = tiny_model()
    again.stop_training = False
    phases.restore(again, str(tmp_path), resumed)
    assert again.get_layer(index=1).get_weights()[0][0, 0] == 3.0  # the last epoch's weights
    callback = phases.PhaseCheckpoint(resumed, str(tmp_path), again, patience=3)
    callback.set_model(again)
    feed(callback, again, [(4, 0.89)])
    assert again.stop_training and resumed.stopped_early and resumed.epochs_done == 5

    phases.load_best(again, str(tmp_path), resumed)
    assert again.get_layer(index=1).get_weights()[0][0, 0] == 1.0  # epoch 2 (index 1) was best
    # the previous last and best files stay until the newer ones have surely reached S3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best-epoch1.npz",
        "best-epoch2.npz",
        "last-epoch4.npz",
        "last-epoch5.npz",
        "state.json",
    ]
    assert "[epoch] phase=fine_tuned epoch=5/50" in capsys.readouterr().out


def run_epochs(directory, values, patience=0):
    model = tiny_model()
    model.stop_training = False
    state = phases.PhaseState(phase="fine_tuned", epochs=10)
    callback = phases.PhaseCheckpoint(state, str(directory), model, patience=patience)
    callback.set_model(model)
    feed(callback, model, values)
    return state


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_resume_falls_back_to_the_newest_complete_epoch(tmp_path, capsys, damage):
    """SageMaker's checkpoint upload is asynchronous: state.json can arrive without its weights."""
    run_epochs(tmp_path, [(0, 0.70), (1, 0.90), (2, 0.85)])
    named = tmp_path / "last-epoch3.npz"
    if damage == "delete":
        named.unlink()
    else:
        named.write_bytes(named.read_bytes()[:40])
    state = phases.load_state(str(tmp_path), "fine_tuned", 10)
    assert (state.epochs_done, len(state.history), state.last_weights) == (2, 2, "last-epoch2.npz")
    assert (state.best_epoch, state.wait, state.finished) == (2, 0, False)
    model = tiny_model()
    phases.restore(model, str(tmp_path), state)
    assert model.get_layer(index=1).get_weights()[0][0, 0] == 1.0  # epoch 2's weights
    assert "resuming after epoch 2 instead of 3" in capsys.readouterr().out
    # the trimmed state is what a further restart sees
    assert phases.load_state(str(tmp_path), "fine_tuned", 10).epochs_done == 2


def test_resume_recomputes_the_best_epoch_when_the_newest_best_is_lost(tmp_path):
    run_epochs(tmp_path, [(0, 0.70), (1, 0.60), (2, 0.90)])  # epoch 3 is the new best
    (tmp_path / "best-epoch3.npz").unlink()
    (tmp_path / "last-epoch3.npz").unlink()
    state = phases.load_state(str(tmp_path), "fine_tuned", 10)
    assert (state.epochs_done, state.best_epoch, state.best_weights) == (2, 1, "best-epoch1.npz")
    assert state.best_val_accuracy == 0.70 and state.wait == 1


def test_nothing_complete_starts_the_phase_over(tmp_path, capsys):
    run_epochs(tmp_path, [(0, 0.70)])
    (tmp_path / "last-epoch1.npz").unlink()
    state = phases.load_state(str(tmp_path), "fine_tuned", 10)
    assert (state.epochs_done, state.history) == (0, [])
    assert "starting the phase over" in capsys.readouterr().out


def test_a_checkpoint_written_by_another_recipe_is_refused_in_one_line(tmp_path):
    from vgg_transfer import config

    written = config.recipe(config.Hyperparameters(epochs_fine_tuned=50))
    phases.save_state(str(tmp_path), phases.PhaseState("fine_tuned", 50, 3, config=written))
    assert phases.load_state(str(tmp_path), "fine_tuned", 50, written).epochs_done == 3
    # Speed settings are not the recipe: the run resumes with XLA or mixed precision on.
    faster = config.recipe(config.Hyperparameters(epochs_fine_tuned=50, xla=True))
    assert phases.load_state(str(tmp_path), "fine_tuned", 50, faster).epochs_done == 3
    other = config.recipe(
        config.Hyperparameters(epochs_fine_tuned=50, learning_rate_fine_tuned=1e-4)
    )
    with pytest.raises(phases.ForeignCheckpoint) as refused:
        phases.load_state(str(tmp_path), "fine_tuned", 50, other)
    message = str(refused.value)
    assert "learning_rate_fine_tuned: 1e-05 → 0.0001" in message and "FRESH=1" in message
    assert "\n" not in message


def test_a_hyperparameter_added_since_leaves_a_checkpoint_resumable(tmp_path):
    """A checkpoint written before the job had a setting resumes when the setting keeps its
    default, and is refused when the run changes it."""
    from vgg_transfer import config

    written = config.recipe(config.Hyperparameters())
    del written["dropout"]  # as if dropout had been added to the job after this run began
    phases.save_state(str(tmp_path), phases.PhaseState("frozen", 30, 2, config=written))
    current = config.recipe(config.Hyperparameters())
    assert phases.load_state(str(tmp_path), "frozen", 30, current).epochs_done == 2
    with pytest.raises(phases.ForeignCheckpoint, match="dropout: 0.0 → 0.5"):
        phases.load_state(str(tmp_path), "frozen", 30, config.recipe(
            config.Hyperparameters(dropout=0.5)))  # fmt: skip


def test_every_epoch_line_carries_the_phases_best_val_accuracy_not_the_epochs_own(tmp_path, capsys):
    """SageMaker's tuning objective is the latest value the metric regex matches in the log: the
    epoch line must carry the best so far, so that a job is ranked by the weights it keeps."""
    import re

    from vgg_transfer import contract

    model = tiny_model()
    model.stop_training = False
    state = phases.PhaseState(phase="fine_tuned", epochs=4)
    callback = phases.PhaseCheckpoint(state, str(tmp_path), model, patience=0)
    callback.set_model(model)
    feed(callback, model, [(0, 0.70), (1, 0.90), (2, 0.85), (3, 0.88)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[epoch]")]
    (objective,) = [
        d for d in contract.metric_definitions() if d["Name"] == contract.TUNING_OBJECTIVE
    ]
    carried = [float(re.search(objective["Regex"], line).group(1)) for line in lines]
    own = [float(re.search(r"\bval_accuracy=([0-9.]+)", line).group(1)) for line in lines]
    assert own == [0.70, 0.90, 0.85, 0.88]
    assert carried == [0.70, 0.90, 0.90, 0.90]  # the best so far, epoch by epoch
