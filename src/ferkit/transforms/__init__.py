"""Pure batched image functions, the same code in training, evaluation and inference, on CPU or GPU.

``preprocess``: uint8 faces to normalised model input (channels, resize, centre crop); ``augment``: the
training augmentations and MixUp/CutMix; ``occlusion``: the named face masks (upper, lower, left, right,
eyes, mouth, ...) used by studies, robust training and evaluation; ``views``: test-time augmentation views and
the centre window a model sees (importable without torch).
"""
