"""The seed study's reference figures, as written down in docs/seed-study.md (its notebooks' results).

These are the published numbers every report compares with; nothing here is measured by us.
"""

from vgg_transfer.contract import FINE_TUNED, FROZEN

SOURCE = "the seed study's results (docs/seed-study.md; Keras 2.1.4, one K80 on a p2.xlarge)"

RESULTS = {
    "small": {
        "train_images": 4000,
        FROZEN: {"test_accuracy": 0.898, "best_val_accuracy": 0.9115, "best_epoch": 18},
        FINE_TUNED: {"test_accuracy": 0.9665, "best_val_accuracy": 0.9695, "best_epoch": 32},
    },
    "full": {
        "train_images": 21000,
        FROZEN: {"test_accuracy": 0.921, "best_val_accuracy": 0.9345, "best_epoch": 18},
        FINE_TUNED: {"test_accuracy": 0.9765, "best_val_accuracy": 0.9860, "best_epoch": 36},
    },
}

# K80 seconds per epoch (training + validation), midpoints of the seed's ranges.
K80_EPOCH_SECONDS = {
    "small": {FROZEN: 36.5, FINE_TUNED: 41.5},
    "full": {FROZEN: 164.0, FINE_TUNED: 169.0},
}
