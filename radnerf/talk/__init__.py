"""Any audio -> a talking video of a trained person.

- :mod:`radnerf.talk.render`: ``radnerf render person=NAME|model=PACKAGE [audio=PATH]`` (:func:`render`), frame by frame.
- :mod:`radnerf.talk.stream`: ``radnerf stream ... audio=FILE|mic``: audio chunks in, frames out, latency measured.
- :mod:`radnerf.talk.package`: ``radnerf package person=NAME``: the self-contained model a render needs.
- :mod:`radnerf.talk.clip`, :mod:`radnerf.talk.controls`: what a video borrows from the training clip, and how.
"""

from radnerf.talk.render import RenderResult, render

__all__ = ["RenderResult", "render"]
