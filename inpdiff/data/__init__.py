"""Data: image I/O, masks, fill methods, the synthetic generator, dataset layouts, augmentations.

numpy + OpenCV only (scikit-image for the biharmonic fill), so the lean runtime may use `io`.
"""
