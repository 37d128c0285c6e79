"""``make predict``: classify images with a run's model, into a Kaggle Redux submission file.

    python -m training.predict --run runs/<job> --images <folder | image | test.zip | kaggle>
                               [--out FILE] [--clip 0.005]

Loads ``<run>/model/model.h5`` (saved by the job under Keras 2 or Keras 3, in float32 or mixed
precision), decodes and resizes each image exactly as training did
(``vgg_transfer.channels.image_from_bytes``; preprocessing is inside the model), and writes
``id,label`` rows where label is P(dog): the format of Kaggle's *Dogs vs. Cats Redux* submissions,
ids from the file names (``1.jpg`` → 1). Redux is scored by log loss and wants a row for every
test id, so an image that does not decode still gets one, at 0.5 (what log loss charges least for
knowing nothing), and is named. ``--clip`` keeps every probability inside [clip, 1 - clip]: log
loss punishes a confident mistake without bound, and 0.005 caps one at about 5.3. Images stream
in batches, so memory stays flat for Kaggle's 12,500 test images. The CSV appears only when every
image has been seen.
"""
