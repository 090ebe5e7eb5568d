"""Any audio -> a talking video of a trained person.

- :mod:`radnerf.talk.render`: ``radnerf render person=NAME [audio=PATH]`` (:func:`render`), frame by frame.
"""

from radnerf.talk.render import RenderResult, render

__all__ = ["RenderResult", "render"]
