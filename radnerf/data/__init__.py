"""What training reads: one person's processed files as arrays and images (nerfstudio's datamanager).

:class:`~radnerf.data.dataset.PersonDataset` loads one split (``train`` or
``val``) of ``artifacts/<person>/``: per frame the camera pose in RAD-NeRF's
normalised space, the intrinsics, the eye ratio, the face and lip
rectangles and the audio window, and on demand the ground-truth image, the
RGBA torso image and the background. It checks on load that the files agree
(every frame has its images, its audio window and its regions row) and names
the file and the stage to re-run when they do not.

The room reads through :mod:`radnerf.paths` and :mod:`radnerf.formats` (and
:mod:`radnerf.media` for images); it never calls a stage, so a dataset that
RAD-NeRF or ER-NeRF processed loads the same way as ours. The head trainer
builds its ray and patch batches on it.
"""

from radnerf.data.dataset import PersonDataset

__all__ = ["PersonDataset"]
