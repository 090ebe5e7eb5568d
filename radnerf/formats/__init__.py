"""RAD-NeRF's on-disk files, read and written in one place.

Tracking, the dataset, importers and the stages share these readers and
writers, so a dataset processed by RAD-NeRF or ER-NeRF and ours agree to the
byte where the format allows:

- :mod:`~radnerf.formats.manifests`: radnerf's own ``manifests/<stage>.json``.
- :mod:`~radnerf.formats.frames`: how many frames a person has, and their size.
- :mod:`~radnerf.formats.landmarks`: ``ori_imgs/<i>.lms`` (68 x 2, ``np.savetxt``).
- :mod:`~radnerf.formats.regions`: ``regions.csv`` (eye ratio, face and lip rectangles).
- :mod:`~radnerf.formats.transforms`: ``transforms_{train,val}.json`` (NeRF-convention poses).
"""
