"""Best-epoch keeping and early stopping, and that both survive a restart."""

import numpy as np
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best-epoch2.npz",
        "last-epoch5.npz",
        "state.json",
    ]
    assert "[epoch] phase=fine_tuned epoch=5/50" in capsys.readouterr().out
